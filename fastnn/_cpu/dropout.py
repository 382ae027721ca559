"""CPU kernels: inverted dropout with a regenerated (never stored) mask.

Element ``i`` (flat C-order index of the logical shape) is kept iff
``u(i) >= threshold`` where ``u`` is the counter-based stream of
:mod:`fastnn._cpu.rng` and ``threshold = round(p * 2**32)``.  The forward and
the backward pass are the same kernel, ``out = inp * (scale if kept else 0)``:
the backward regenerates the mask from (seed, index) instead of reading one.
The multiply (rather than a select of 0) keeps torch's semantics that a NaN or
inf in a dropped position stays NaN.
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu.rng import block_key, segment, uniform32


@jit
def _uint32_threshold(threshold):
    """(threshold as uint32, keep_none): round(p * 2**32) is 2**32 for p ~ 1."""
    return np.uint32(min(threshold, 0xFFFFFFFF)), threshold > 0xFFFFFFFF


@jit
def _scale_segment(inp, out, low, a, b, threshold, scale):
    zero = scale * np.float32(0.0)  # 0 in the dtype of scale
    for j in range(inp.size):
        u = uniform32(np.uint32(low + np.uint32(j)), a, b)
        out[j] = inp[j] * (scale if u >= threshold else zero)


@jit
def _mask_segment(out, low, a, b, threshold):
    for j in range(out.size):
        out[j] = uniform32(np.uint32(low + np.uint32(j)), a, b) >= threshold


@jit
def _scale_range(inp, out, key, threshold, scale, start):
    """out = inp * mask * scale on 1-D views whose first element has global index ``start``."""
    thr, keep_none = _uint32_threshold(threshold)
    if keep_none:
        scale = scale * np.float32(0.0)
    pos = 0
    while pos < inp.size:
        block, low, length = segment(start + pos, inp.size - pos)
        a, b = block_key(key, block)
        _scale_segment(inp[pos:pos + length], out[pos:pos + length], low, a, b, thr, scale)
        pos += length


@jit
def _mask_range(out, key, threshold, start):
    thr, keep_none = _uint32_threshold(threshold)
    if keep_none:
        out[:] = False
        return
    pos = 0
    while pos < out.size:
        block, low, length = segment(start + pos, out.size - pos)
        a, b = block_key(key, block)
        _mask_segment(out[pos:pos + length], low, a, b, thr)
        pos += length


@dual_jit
def dropout_scale(inp, out, key, threshold, scale, n_chunks):
    """out = inp * mask * scale for flat C-contiguous ``inp``/``out``.

    ``threshold`` is round(p * 2**32) as an int64 (2**32 keeps nothing);
    ``scale`` has the dtype of ``inp``.
    """
    n = inp.size
    for c in prange(n_chunks):  # range in the serial twin
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _scale_range(inp[lo:hi], out[lo:hi], key, threshold, scale, lo)


@dual_jit
def dropout_mask(out, key, threshold, n_chunks):
    """out[i] = (u(i) >= threshold) for a flat C-contiguous bool array."""
    n = out.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _mask_range(out[lo:hi], key, threshold, lo)
