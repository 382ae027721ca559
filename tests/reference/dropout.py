"""Float64 / numpy references for the counter-based RNG and dropout.

The generator is re-implemented here with numpy uint64 arithmetic (wrapping
multiply), independently of the numba kernels, so a test can check the
kernels bit for bit.
"""
import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash32(x):
    """lowbias32 with numpy's wrapping uint32 arithmetic."""
    x = np.asarray(x, dtype=np.uint32)
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def random_uint32(seed, n, start=0):
    """u(seed, i) for i in [start, start + n): two keyed lowbias32 rounds of the index."""
    key = int(_mix64(np.uint64((seed + GOLDEN) & _MASK64)))
    i = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _mix64(np.uint64(key) + (i >> np.uint64(32)) * np.uint64(GOLDEN))
        a = (z & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        b = (z >> np.uint64(32)).astype(np.uint32)
        low = (i & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return _hash32(_hash32(low + a) ^ b)


def dropout_mask(shape, p, seed):
    """Keep-mask: u(seed, i) >= round(p * 2**32), i the flat C-order index."""
    n = int(np.prod(shape, dtype=np.int64))
    u = random_uint32(seed, n).astype(np.int64)
    # int(): round() of a numpy float is a numpy float before numpy 2
    return (u >= int(round(p * 2.0 ** 32))).reshape(shape)  # noqa: RUF046


def dropout(x, p, seed):
    """Inverted dropout in float64: x * mask / (1 - p) (zeros for p = 1)."""
    x = np.asarray(x, dtype=np.float64)
    mask = dropout_mask(x.shape, p, seed)
    if p == 1.0:
        return x * 0.0
    return x * mask / (1.0 - p)
