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
from fastnn._cpu.rng import high_word, low_word, pair_bits


@jit
def _scale_range(inp, out, key, threshold, scale, start):
    """out = inp * mask * scale on 1-D views whose first element has global index ``start`` (even)."""
    zero = scale * np.float32(0.0)  # 0 in the dtype of scale
    first = np.uint64(start) >> np.uint64(1)
    n = inp.size
    for j in range(n // 2):
        z = pair_bits(key, first + np.uint64(j))
        out[2 * j] = inp[2 * j] * (scale if low_word(z) >= threshold else zero)
        out[2 * j + 1] = inp[2 * j + 1] * (scale if high_word(z) >= threshold else zero)
    if n % 2:
        z = pair_bits(key, first + np.uint64(n // 2))
        out[n - 1] = inp[n - 1] * (scale if low_word(z) >= threshold else zero)


@jit
def _mask_range(out, key, threshold, start):
    first = np.uint64(start) >> np.uint64(1)
    n = out.size
    for j in range(n // 2):
        z = pair_bits(key, first + np.uint64(j))
        out[2 * j] = low_word(z) >= threshold
        out[2 * j + 1] = high_word(z) >= threshold
    if n % 2:
        out[n - 1] = low_word(pair_bits(key, first + np.uint64(n // 2))) >= threshold


@dual_jit
def dropout_scale(inp, out, key, threshold, scale, n_chunks):
    """out = inp * mask * scale for flat C-contiguous ``inp``/``out``.

    Chunk boundaries fall on even indices so that each element pair (one
    hash) belongs to one chunk.  ``scale`` has the dtype of ``inp``.
    """
    n_pairs = inp.size // 2
    for c in prange(n_chunks):  # range in the serial twin
        lo = 2 * (c * n_pairs // n_chunks)
        hi = inp.size if c == n_chunks - 1 else 2 * ((c + 1) * n_pairs // n_chunks)
        _scale_range(inp[lo:hi], out[lo:hi], key, threshold, scale, lo)


@dual_jit
def dropout_mask(out, key, threshold, n_chunks):
    """out[i] = (u(i) >= threshold) for a flat C-contiguous bool array."""
    n_pairs = out.size // 2
    for c in prange(n_chunks):
        lo = 2 * (c * n_pairs // n_chunks)
        hi = out.size if c == n_chunks - 1 else 2 * ((c + 1) * n_pairs // n_chunks)
        _mask_range(out[lo:hi], key, threshold, lo)
