"""CPU kernels: layer normalization over the rows of an (M, D) array.

Every kernel trusts its inputs (fastnn.functional.layer_norm validates them
and flattens the leading dimensions into M rows and the normalized ones into
D columns): C-contiguous 2-D ``x``/``dy`` of one float dtype, per-row float64
statistics, outputs preallocated by the caller.

Rows are independent, so the forward pass is a ``prange`` over rows.  Each
row's mean and M2 come from a corrected two-pass sum in float64 (the row
is read twice while it sits in cache; never E[x^2] - E[x]^2).  The
backward pass also needs column sums over the rows (dweight, dbias): it
splits the rows into ``n_chunks`` contiguous chunks, each with its own row
of a float64 partial buffer, merged serially in chunk order so the result
does not depend on thread timing (as batch norm's kernels do).

Byte model (the minimum traffic per element, float32):
- forward: 8 B (read x, write y; the statistics pass re-reads a cached row);
- backward: 12 B (read dy and x, write dx; the row sums re-read cached rows).
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit


@jit
def row_moments(row):
    """(mean, M2) of a 1-D row in float64 by the corrected two-pass algorithm.

    The second pass sums the deviations ``t = x - m`` from the first-pass
    mean as well as their squares: in exact arithmetic ``sum(t)`` is 0, so
    its rounded value measures the first mean's error, which corrects both
    the mean and M2 (Chan, Golub and LeVeque 1983).  Exact for any offset:
    a row 1e8 + N(0, 1) keeps its unit variance.  NaN or inf in the row
    makes both NaN (as torch).  M2 is clamped at 0 as a last defence.
    """
    d = row.shape[0]
    s = 0.0
    for j in range(d):
        s += row[j]
    m = s / d
    c = 0.0
    q = 0.0
    for j in range(d):
        t = np.float64(row[j]) - m
        c += t
        q += t * t
    m2 = q - c * c / d
    if m2 < 0.0:
        m2 = 0.0
    return m + c / d, m2


@dual_jit
def layer_norm_forward(x, weight, bias, has_weight, has_bias, eps, y, mean, invstd):
    """Normalize each row of ``x``: y = (x - mean) * invstd * weight + bias.

    Writes ``y`` (x's dtype) and the per-row ``mean`` and ``invstd``
    (float64, biased variance, eps inside the square root).  ``weight`` and
    ``bias`` are (D,) and read only when their flag is set.  The
    elementwise pass runs in float64, rounded once into y.
    """
    n, d = x.shape
    for i in prange(n):
        xi = x[i]
        yi = y[i]
        mu, m2 = row_moments(xi)
        r = 1.0 / np.sqrt(m2 / d + eps)
        mean[i] = mu
        invstd[i] = r
        for j in range(d):
            v = (np.float64(xi[j]) - mu) * r
            if has_weight:
                v = v * weight[j]
            if has_bias:
                v = v + bias[j]
            yi[j] = v


@jit
def _row_backward(dyi, xi, mu, r, weight, has_weight, dxi, pw, pb):
    """dx of one row; adds the row's dy * xhat and dy into the partials pw, pb.

    With g = dy * weight and xhat = (x - mu) * r:
    dx = r * (g - mean(g) - xhat * mean(g * xhat)), the row means over D.
    """
    d = xi.shape[0]
    a = 0.0
    b = 0.0
    for j in range(d):
        g = np.float64(dyi[j])
        xh = (np.float64(xi[j]) - mu) * r
        pb[j] += g
        pw[j] += g * xh
        if has_weight:
            g = g * weight[j]
        a += g
        b += g * xh
    a /= d
    b /= d
    for j in range(d):
        g = np.float64(dyi[j])
        if has_weight:
            g = g * weight[j]
        xh = (np.float64(xi[j]) - mu) * r
        dxi[j] = r * (g - a - xh * b)


@dual_jit
def layer_norm_backward(dy, x, mean, invstd, weight, has_weight, n_chunks, dx, dweight, dbias):
    """Gradients of layer norm: dx per row; dweight = sum(dy xhat), dbias = sum(dy) over rows.

    ``mean``/``invstd`` are the forward's float64 per-row statistics.
    dweight and dbias are returned for the implicit weight 1 / bias 0 when
    the forward had none.  An empty batch gives zero dweight and dbias.
    """
    n, d = x.shape
    n_chunks = max(1, min(n_chunks, n))
    part_w = np.zeros((n_chunks, d))
    part_b = np.zeros((n_chunks, d))
    for k in prange(n_chunks):
        pw = part_w[k]
        pb = part_b[k]
        for i in range(k * n // n_chunks, (k + 1) * n // n_chunks):
            _row_backward(dy[i], x[i], mean[i], invstd[i], weight, has_weight, dx[i], pw, pb)
    for j in range(d):
        tw = 0.0
        tb = 0.0
        for k in range(n_chunks):
            tw += part_w[k, j]
            tb += part_b[k, j]
        dweight[j] = tw
        dbias[j] = tb
