"""Shared test configuration: hypothesis profiles, the torch oracle, tolerances."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastnn._config
import fastnn.memory

# The library runs its serial twins below 2**19 elements (thread wake-up
# costs more than it saves there); the tests' shapes (64 x 512 and up) must
# exercise the parallel twins too.  DualKernel.pick reads this at each call.
fastnn._config.PARALLEL_THRESHOLD = 1 << 15

# Every output the library allocates through fastnn.memory comes from its
# cache here, which hands back buffers holding an earlier test's numbers: a
# kernel that leaves any element of its output unwritten fails its test
# instead of passing on the zeros of fresh pages.  (The library caches
# outputs of 1 MiB or more only.)
fastnn.memory.MIN_BYTES = 0

# Numba compiles on first call, so the first example of a property can take
# seconds: no per-example deadline.  CI derandomizes so a red run reproduces.
settings.register_profile("dev", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def torch():
    """The torch module, the independent oracle.

    Skips when torch is missing, except under FASTNN_REQUIRE_TORCH=1 (set by
    CI), where a missing oracle is a failure: a skipped oracle proves nothing.
    """
    if os.environ.get("FASTNN_REQUIRE_TORCH") == "1":
        import torch as t
    else:
        t = pytest.importorskip("torch")
    t.set_num_threads(1)
    return t


def tolerances(dtype, kind="elementwise"):
    """(rtol, atol) for comparing a kernel with a float64 reference.

    kind is "elementwise" or "reduction" (sums over many terms lose a little
    more precision in float64).
    """
    if np.dtype(dtype) == np.float64:
        return (1e-10, 1e-12) if kind == "elementwise" else (1e-8, 1e-10)
    return 1e-5, 1e-6


def assert_close(actual, expected, dtype=None, kind="elementwise", scale=None):
    """assert_allclose with the project tolerances for ``dtype``.

    The absolute tolerance is scaled by ``scale`` (default: the largest
    magnitude in ``expected``, at least 1), so float32 results of large
    magnitude are judged relative to that magnitude.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    rtol, atol = tolerances(dtype if dtype is not None else actual.dtype, kind)
    if scale is None:
        finite = expected[np.isfinite(expected)]
        scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def hostile_layouts(a):
    """Views of ``a`` with the same values in other memory layouts.

    Returns (name, array) pairs: Fortran order, a strided view, a read-only
    copy.  A kernel must give the same result on each as on ``a``.
    """
    out = [("fortran", np.asfortranarray(a))]
    big = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
    big[::2] = a
    out.append(("strided", big[::2]))
    ro = a.copy()
    ro.setflags(write=False)
    out.append(("readonly", ro))
    return out
