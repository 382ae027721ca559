"""CUDA twins of :mod:`fastnn._cpu.dropout`: inverted dropout, mask regenerated.

One thread per element PAIR (one hash feeds two elements, as on the CPU),
grid-stride.  Element ``i`` is kept iff ``u(i) >= threshold``, with ``u`` the
shared counter-based stream of :mod:`fastnn._cuda.rng`, so the mask is
bit-identical to the CPU's for the same (seed, shape, p).  No mask is stored.
"""
import numpy as np

from fastnn._cuda._common import cuda
from fastnn._cuda.rng import high_word, low_word, pair_bits


@cuda.jit
def dropout_scale(inp, out, key, threshold, scale):
    """out = inp * mask * scale for flat C-contiguous ``inp``/``out``."""
    n = inp.size
    zero = scale * np.float32(0.0)  # 0 in the dtype of scale
    for j in range(cuda.grid(1), (n + 1) // 2, cuda.gridsize(1)):
        z = pair_bits(key, np.uint64(j))
        i = 2 * j
        # a multiply, not a select: NaN/inf in a dropped position gives NaN, as torch
        out[i] = inp[i] * (scale if low_word(z) >= threshold else zero)
        if i + 1 < n:
            out[i + 1] = inp[i + 1] * (scale if high_word(z) >= threshold else zero)


@cuda.jit
def dropout_mask(out, key, threshold):
    """out[i] = (u(i) >= threshold) for a flat bool array."""
    n = out.size
    for j in range(cuda.grid(1), (n + 1) // 2, cuda.gridsize(1)):
        z = pair_bits(key, np.uint64(j))
        i = 2 * j
        out[i] = low_word(z) >= threshold
        if i + 1 < n:
            out[i + 1] = high_word(z) >= threshold
