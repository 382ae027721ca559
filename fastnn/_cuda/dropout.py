"""CUDA twins of :mod:`fastnn._cpu.dropout`: inverted dropout, mask regenerated.

One thread per element, grid-stride.  Element ``i`` is kept iff
``u(i) >= threshold``, with ``u`` the shared counter-based stream of
:mod:`fastnn._cuda.rng`, so the mask is bit-identical to the CPU's for the
same (seed, shape, p).  No mask is stored.
"""
import numpy as np

from fastnn._cuda._common import cuda
from fastnn._cuda.rng import uniform


@cuda.jit
def dropout_scale(inp, out, key, threshold, scale):
    """out = inp * mask * scale for flat C-contiguous ``inp``/``out``.

    ``threshold`` is round(p * 2**32) as an int64 (2**32 keeps nothing).
    """
    zero = scale * np.float32(0.0)  # 0 in the dtype of scale
    if threshold > 0xFFFFFFFF:
        scale = zero
    thr = np.uint32(min(threshold, 0xFFFFFFFF))
    block, a, b = -1, np.uint32(0), np.uint32(0)
    for i in range(cuda.grid(1), inp.size, cuda.gridsize(1)):
        u, block, a, b = uniform(key, i, block, a, b)
        # a multiply, not a select: NaN/inf in a dropped position gives NaN, as torch
        out[i] = inp[i] * (scale if u >= thr else zero)


@cuda.jit
def dropout_mask(out, key, threshold):
    """out[i] = (u(i) >= threshold) for a flat bool array."""
    keep_none = threshold > 0xFFFFFFFF
    thr = np.uint32(min(threshold, 0xFFFFFFFF))
    block, a, b = -1, np.uint32(0), np.uint32(0)
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        u, block, a, b = uniform(key, i, block, a, b)
        out[i] = u >= thr and not keep_none
