"""pytest-benchmark: the machine probes of ``fastnn bench`` compute correctly."""
import numpy as np

from fastnn.bench._machine import stream_copy, stream_triad


def test_stream_triad(benchmark):
    n = 1 << 16
    a, b, c = np.zeros(n), np.arange(n, dtype=np.float64), np.full(n, 2.0)
    benchmark(stream_triad, a, b, c, 3.0)
    np.testing.assert_array_equal(a, b + 3.0 * c)


def test_stream_copy(benchmark):
    n = 1 << 16
    a, b = np.zeros(n), np.arange(n, dtype=np.float64)
    benchmark(stream_copy, a, b)
    np.testing.assert_array_equal(a, b)
