"""Float64 reference batch normalization, written for clarity (CS231n style).

Nothing here is modified in place: the reference returns the updated running
statistics instead, so a test can compare them with the kernel's in-place
update.
"""
import numpy as np


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Returns (y, mean, invstd, new_running_mean, new_running_var), all float64.

    The new running statistics are None when none were given.
    """
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape
    gamma = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    beta = np.zeros(c) if bias is None else np.asarray(bias, dtype=np.float64)
    new_rm = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    new_rv = None if running_var is None else np.array(running_var, dtype=np.float64)
    if training:
        # Two-pass statistics: subtract the mean first, then square.
        mean = x.sum(axis=0) / n
        centered = x - mean
        var = (centered * centered).sum(axis=0) / n
        if new_rm is not None and n > 0:
            new_rm = (1 - momentum) * new_rm + momentum * mean
            new_rv = (1 - momentum) * new_rv + momentum * var * n / (n - 1)
    else:
        mean = np.array(running_mean, dtype=np.float64)
        var = np.array(running_var, dtype=np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    y = xhat * gamma + beta
    return y, mean, invstd, new_rm, new_rv


def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True):
    """Returns (dx, dweight, dbias) in float64, by the step-by-step chain rule.

    Deliberately not the compact closed form the kernel uses: each
    intermediate of the forward graph (xhat, var, mean) gets its own
    gradient, so an algebra slip in the closed form would show up.
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    invstd = np.asarray(invstd, dtype=np.float64)
    n, c = x.shape
    gamma = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    xmu = x - mean
    xhat = xmu * invstd
    dbias = dy.sum(axis=0)
    dweight = (dy * xhat).sum(axis=0)
    dxhat = dy * gamma
    if not training:
        return dxhat * invstd, dweight, dbias
    # forward: var = mean(xmu^2), invstd = (var + eps)^-1/2, xhat = xmu * invstd
    dinvstd = (dxhat * xmu).sum(axis=0)
    dvar = dinvstd * (-0.5) * invstd ** 3
    dxmu = dxhat * invstd + dvar * 2.0 * xmu / n
    dmean = -dxmu.sum(axis=0)
    dx = dxmu + dmean / n
    return dx, dweight, dbias
