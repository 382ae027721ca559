"""CPU kernels: batch normalization over the rows of an (N, C) array.

Every kernel trusts its inputs (fastnn.functional.batch_norm validates them):
C-contiguous 2-D ``x``/``dy`` of one float dtype, per-column float64
statistics, outputs preallocated by the caller.

Reductions accumulate in float64.  Elementwise passes run in x's dtype (for
float32, twice the SIMD width of float64) on per-column coefficients
prepared in float64; :func:`_round_mean` keeps them as accurate as a
float64 pass rounded once at the end.

Parallel reductions split the rows into ``n_chunks`` contiguous chunks (the
caller passes the thread count: numba.get_num_threads() inside a parallel
kernel would defeat cache=True).  Each chunk fills its own row of a partial
buffer, vectorized across the contiguous columns; the partials are merged
serially, so the result does not depend on thread timing.

Byte model (the minimum traffic per element, float32):
- train forward: 12 B (read x for the statistics; read x again, write y);
- eval forward: 8 B (read x, write y);
- train backward: 20 B (read x and dy for the sums; read both again, write dx);
- eval backward: 12 B (one fused pass: read x and dy, write dx).
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu._moments import merge_parts, rows_moments


@jit
def _round_mean(mean, like):
    """(m, err): ``mean`` rounded to like's dtype, and ``m - mean`` in float64.

    x - mean = (x - m) + err.  The first term is computed in x's dtype with
    one rounding (exactly when x is near m, as for data like 1e4 + N(0, 1));
    err is a per-column constant that the callers fold, in float64, into an
    additive coefficient.  Rounding the mean alone would shift every
    normalized value by up to 6e-4 for a float32 mean of 1e4.
    """
    c = mean.shape[0]
    m = np.empty(c, like.dtype)
    err = np.empty(c)
    for j in range(c):
        m[j] = mean[j]
        err[j] = np.float64(m[j]) - mean[j]
    return m, err


@jit
def _affine(x, mean, invstd, weight, bias, has_weight, has_bias):
    """Per-column (m, s, t) in x's dtype with y = (x - m) * s + t."""
    c = mean.shape[0]
    m, err = _round_mean(mean, x)
    s = np.empty(c, x.dtype)
    t = np.empty(c, x.dtype)
    for j in range(c):
        scale = invstd[j] * weight[j] if has_weight else invstd[j]
        shift = np.float64(bias[j]) if has_bias else 0.0
        s[j] = scale
        t[j] = shift + err[j] * scale
    return m, s, t


@dual_jit
def batch_norm_train_forward(x, weight, bias, has_weight, has_bias, eps, n_chunks,
                             running_mean, running_var, update_running, momentum,
                             y, mean, invstd):
    """Batch statistics, running-stat update and normalization of ``x``.

    Writes ``y`` (x's dtype), ``mean`` and ``invstd`` (float64, biased
    variance); when ``update_running`` updates ``running_mean`` and
    ``running_var`` (unbiased variance) in place, which needs N >= 2.
    """
    n, c = x.shape
    n_chunks = max(1, min(n_chunks, n))
    part_n = np.zeros(n_chunks)
    part_mean = np.zeros((n_chunks, c))
    part_m2 = np.zeros((n_chunks, c))
    for k in prange(n_chunks):
        part_n[k] = rows_moments(x, k * n // n_chunks, (k + 1) * n // n_chunks,
                                 part_mean[k], part_m2[k])
    _, batch_mean, batch_m2 = merge_parts(part_n, part_mean, part_m2)

    for j in range(c):
        ma = batch_mean[j] if n > 0 else np.nan    # an empty batch has no mean (as torch)
        qa = max(batch_m2[j], 0.0)
        mean[j] = ma
        invstd[j] = 1.0 / np.sqrt(qa / n + eps)
        if update_running:
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * ma
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * (qa / (n - 1))

    m, s, t = _affine(x, mean, invstd, weight, bias, has_weight, has_bias)
    for i in prange(n):
        xi = x[i]
        yi = y[i]
        for j in range(c):
            yi[j] = (xi[j] - m[j]) * s[j] + t[j]


@dual_jit
def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, has_weight, has_bias,
                            eps, y, mean, invstd):
    """Normalize ``x`` with the running statistics: one pass over x.

    Writes ``y``, and ``mean``/``invstd`` (float64) as backward needs them.
    """
    n, c = x.shape
    for j in range(c):
        mean[j] = running_mean[j]
        invstd[j] = 1.0 / np.sqrt(np.float64(running_var[j]) + eps)
    m, s, t = _affine(x, mean, invstd, weight, bias, has_weight, has_bias)
    for i in prange(n):
        xi = x[i]
        yi = y[i]
        for j in range(c):
            yi[j] = (xi[j] - m[j]) * s[j] + t[j]


@dual_jit
def batch_norm_train_backward(dy, x, mean, invstd, weight, has_weight, n_chunks,
                              dx, dweight, dbias):
    """Gradients of batch norm with batch statistics.

    dx = weight * invstd / N * (N dy - sum(dy) - xhat * sum(dy xhat)),
    dweight = sum(dy xhat), dbias = sum(dy), sums over the rows.
    """
    n, c = x.shape
    n_chunks = max(1, min(n_chunks, n))
    part_s1 = np.zeros((n_chunks, c))
    part_s2 = np.zeros((n_chunks, c))
    for k in prange(n_chunks):
        lo = k * n // n_chunks
        hi = (k + 1) * n // n_chunks
        s1 = part_s1[k]
        s2 = part_s2[k]
        # Four rows per sweep, as in rows_moments: the float64 accumulators
        # are loaded and stored once per four rows instead of every row.
        i = lo
        while i + 4 <= hi:
            g0, g1, g2, g3 = dy[i], dy[i + 1], dy[i + 2], dy[i + 3]
            x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            for j in range(c):
                mj = mean[j]
                a0, a1 = np.float64(g0[j]), np.float64(g1[j])
                a2, a3 = np.float64(g2[j]), np.float64(g3[j])
                s1[j] += (a0 + a1) + (a2 + a3)
                s2[j] += ((a0 * (np.float64(x0[j]) - mj) + a1 * (np.float64(x1[j]) - mj))
                          + (a2 * (np.float64(x2[j]) - mj) + a3 * (np.float64(x3[j]) - mj)))
            i += 4
        while i < hi:
            dyi = dy[i]
            xi = x[i]
            for j in range(c):
                g = np.float64(dyi[j])
                s1[j] += g
                s2[j] += g * (np.float64(xi[j]) - mean[j])
            i += 1

    # dx = a dy - a q (x - mean) - a b with a = weight * invstd, b = sum(dy) / N,
    # q = invstd^2 sum(dy (x - mean)) / N; x - mean = (x - m) + err as in
    # _round_mean, the constant parts folded into k0.
    m, err = _round_mean(mean, x)
    k_dy = np.empty(c, x.dtype)
    k_x = np.empty(c, x.dtype)
    k0 = np.empty(c, x.dtype)
    for j in range(c):
        t1 = 0.0
        t2 = 0.0
        for k in range(n_chunks):
            t1 += part_s1[k, j]
            t2 += part_s2[k, j]
        dbias[j] = t1
        dweight[j] = t2 * invstd[j]
        a = invstd[j] * weight[j] if has_weight else invstd[j]
        aq = a * t2 * invstd[j] * invstd[j] / n if n > 0 else 0.0
        k_dy[j] = a
        k_x[j] = -aq
        k0[j] = -aq * err[j] - (a * t1 / n if n > 0 else 0.0)

    for i in prange(n):
        dyi = dy[i]
        xi = x[i]
        dxi = dx[i]
        for j in range(c):
            dxi[j] = dyi[j] * k_dy[j] + (xi[j] - m[j]) * k_x[j] + k0[j]


@dual_jit
def batch_norm_eval_backward(dy, x, mean, invstd, weight, has_weight, n_chunks,
                             dx, dweight, dbias):
    """Gradients of batch norm with fixed (running) statistics, in one pass.

    dx = dy * weight * invstd, dweight = sum(dy xhat), dbias = sum(dy).
    """
    n, c = x.shape
    n_chunks = max(1, min(n_chunks, n))
    a = np.empty(c, x.dtype)
    for j in range(c):
        a[j] = invstd[j] * weight[j] if has_weight else invstd[j]
    part_s1 = np.zeros((n_chunks, c))
    part_s2 = np.zeros((n_chunks, c))
    for k in prange(n_chunks):
        lo = k * n // n_chunks
        hi = (k + 1) * n // n_chunks
        s1 = part_s1[k]
        s2 = part_s2[k]
        for i in range(lo, hi):
            dyi = dy[i]
            xi = x[i]
            dxi = dx[i]
            for j in range(c):
                dxi[j] = dyi[j] * a[j]
                g = np.float64(dyi[j])
                s1[j] += g
                s2[j] += g * (np.float64(xi[j]) - mean[j])
    for j in range(c):
        t1 = 0.0
        t2 = 0.0
        for k in range(n_chunks):
            t1 += part_s1[k, j]
            t2 += part_s2[k, j]
        dbias[j] = t1
        dweight[j] = t2 * invstd[j]
