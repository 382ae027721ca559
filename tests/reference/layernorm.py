"""Float64 reference layer normalization, written for clarity (CS231n style).

The row statistics use ``math.fsum`` (a correctly rounded sum): with a
large offset (1e8 + N(0, 1)) numpy's own mean is off by a few ulp of the
offset, more than the kernels' corrected two-pass sums are.
"""
import math

import numpy as np


def _axes(x, normalized_shape):
    k = 1 if np.isscalar(normalized_shape) else len(normalized_shape)
    return tuple(range(x.ndim - k, x.ndim))


def _fsum_mean(a, axes):
    """Mean over the trailing ``axes`` with exactly rounded sums (keepdims)."""
    k = len(axes)
    d = math.prod(a.shape[a.ndim - k:])
    out = np.array([math.fsum(row) / d for row in a.reshape(-1, d)], dtype=np.float64)
    return out.reshape(a.shape[:a.ndim - k] + (1,) * k)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Returns (y, mean, invstd) in float64; mean/invstd have x's leading shape."""
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(x, normalized_shape)
    # Two-pass statistics: subtract the mean first, then square.
    mean = _fsum_mean(x, axes)
    centered = x - mean
    var = _fsum_mean(centered * centered, axes)
    invstd = 1.0 / np.sqrt(var + eps)
    y = centered * invstd
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y, mean.reshape(x.shape[:x.ndim - len(axes)]), invstd.reshape(
        x.shape[:x.ndim - len(axes)])


def layer_norm_backward(dy, x, normalized_shape, mean, invstd, weight=None):
    """Returns (dx, dweight, dbias) in float64, by the step-by-step chain rule.

    Deliberately not the compact closed form the kernel uses: each
    intermediate of the forward graph (xhat, var, mean) gets its own gradient.
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(x, normalized_shape)
    lead = (slice(None),) * (x.ndim - len(axes)) + (None,) * len(axes)
    mean = np.asarray(mean, dtype=np.float64)[lead]
    invstd = np.asarray(invstd, dtype=np.float64)[lead]
    d = np.prod([x.shape[a] for a in axes])
    rows = tuple(range(x.ndim - len(axes)))
    xmu = x - mean
    xhat = xmu * invstd
    dbias = dy.sum(axis=rows)
    dweight = (dy * xhat).sum(axis=rows)
    dxhat = dy if weight is None else dy * np.asarray(weight, dtype=np.float64)
    # forward: var = mean(xmu^2), invstd = (var + eps)^-1/2, xhat = xmu * invstd
    dinvstd = (dxhat * xmu).sum(axis=axes, keepdims=True)
    dvar = dinvstd * (-0.5) * invstd ** 3
    dxmu = dxhat * invstd + dvar * 2.0 * xmu / d
    dmean = -dxmu.sum(axis=axes, keepdims=True)
    return dxmu + dmean / d, dweight, dbias
