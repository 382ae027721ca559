"""pytest-benchmark: every fastnn kernel, timed AND checked.

Each test times the call ``fastnn bench`` times (``fastnn.bench._cases``)
and checks its outputs against the plain-numpy implementation the bench
compares with, so the test stays meaningful under ``--benchmark-disable``
(the default in pyproject: CI runs the call once and checks it) and proves
that the bench compares like with like.  ``pytest benchmarks
--benchmark-enable`` prints the timings.  A kernel that does not exist yet
is skipped with its missing name.
"""
import numpy as np
import pytest

from fastnn.bench import _cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [k.name for k in _cases.KERNELS])
def test_kernel_matches_numpy(benchmark, name, dtype):
    k = _cases.KERNELS_BY_NAME[name]
    missing = k.missing()
    if missing:
        pytest.skip("not implemented yet: " + ", ".join(missing))
    data = k.setup(*k.test_shape, np.dtype(dtype).type)
    k.build("fastnn", data)[0]()  # compile outside the timing
    # A fresh build: a builder may keep state between calls (max_norm_'s
    # shrinking bound), and the compared output is that of a first call.
    run, post = k.build("fastnn", data)
    got = tuple(_cases.to_numpy(o) for o in post(benchmark(run)))
    want = k.outputs("numpy", data)
    for g in got:
        if g.ndim:  # arrays keep the input dtype
            assert g.dtype == np.dtype(dtype), (name, g.dtype)
    _cases.compare_outputs(k, data, got, want, dtype)
