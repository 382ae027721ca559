"""CPU kernels: per-feature statistics and affine transforms of an (N, D) array.

Every kernel trusts its inputs (fastnn.preprocessing validates them):
C-contiguous 2-D ``x`` of one float dtype, float64 per-column coefficients,
outputs preallocated by the caller.  Statistics are accumulated in float64
and elementwise work is done in float64, rounded once into the output dtype.

Parallel reductions split the rows into ``n_chunks`` contiguous chunks (the
caller passes the thread count: numba.get_num_threads() inside a parallel
kernel would defeat cache=True); each chunk fills its own row of a partial
buffer and the partials are merged serially with Chan's formula, so the
result does not depend on thread timing.

Byte model (minimum traffic per element, float32): statistics 4 B (read x
once); transform and inverse transform 8 B (read x, write y).
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit
from fastnn._cpu._moments import merge_parts, rows_moments


@dual_jit
def column_moments(x, n_chunks):
    """Per-column count, mean and M2 (sum of squared deviations) of ``x``.

    Returns ``(n, mean, m2)``: n a float, mean and m2 float64 arrays of
    length D.  NaN in a column makes its mean and M2 NaN.  Each chunk of
    rows is summarized by :func:`rows_moments`, and the chunks are merged
    with Chan's formula in a fixed order.
    """
    n, d = x.shape
    n_chunks = max(1, min(n_chunks, n))
    part_n = np.zeros(n_chunks)
    part_mean = np.zeros((n_chunks, d))
    part_m2 = np.zeros((n_chunks, d))
    for k in prange(n_chunks):
        part_n[k] = rows_moments(x, k * n // n_chunks, (k + 1) * n // n_chunks,
                                 part_mean[k], part_m2[k])
    return merge_parts(part_n, part_mean, part_m2)


@dual_jit
def center_scale(x, shift, scale, out):
    """``out = (x - shift) * scale`` per column: one pass (read x, write out)."""
    n, d = x.shape
    for i in prange(n):
        xi = x[i]
        oi = out[i]
        for j in range(d):
            oi[j] = (np.float64(xi[j]) - shift[j]) * scale[j]


@dual_jit
def scale_shift(x, scale, shift, out):
    """``out = x * scale + shift`` per column: one pass (read x, write out)."""
    n, d = x.shape
    for i in prange(n):
        xi = x[i]
        oi = out[i]
        for j in range(d):
            oi[j] = np.float64(xi[j]) * scale[j] + shift[j]


@dual_jit
def center_columns(x, n_chunks, out):
    """Column means of ``x`` (float64, returned) and ``out = x - mean``.

    Two passes over ``x``; on a block that fits in the cache (how PCA calls
    it) only the first one reaches DRAM.
    """
    n, d = x.shape
    n_chunks = max(1, min(n_chunks, n))
    part = np.zeros((n_chunks, d))
    for k in prange(n_chunks):
        lo = k * n // n_chunks
        hi = (k + 1) * n // n_chunks
        pk = part[k]
        for i in range(lo, hi):
            row = x[i]
            for j in range(d):
                pk[j] += row[j]
    mean = np.zeros(d)
    for k in range(n_chunks):
        for j in range(d):
            mean[j] += part[k, j]
    for j in range(d):
        mean[j] /= max(n, 1)
    for i in prange(n):
        xi = x[i]
        oi = out[i]
        for j in range(d):
            oi[j] = np.float64(xi[j]) - mean[j]
    return mean
