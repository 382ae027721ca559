"""CPU kernels: softmax, log-softmax, fused softmax-cross-entropy.

Every kernel works on the rows of a C-contiguous 2-D array (the public
wrappers move the softmax axis last).  Each row is handled in one place, in
the cache: a vectorized max, one pass that computes ``exp(x - max)`` with the
vectorizable :func:`fastnn._cpu._math.exp` while summing, and one pass that
writes the output.  Sums accumulate in float64 for float32 data too.
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu._math import exp, row_max


@jit
def _sum_exp(row, m):
    # A function of its own: written out inside cross_entropy_rows, this loop
    # did not vectorize (10 ns per element instead of 1).
    s = 0.0
    for j in range(row.size):
        s += exp(row[j] - m)
    return s


@dual_jit
def softmax_rows(x, out):
    """out[i] = softmax(x[i]) for every row."""
    n, c = x.shape
    for i in prange(n):
        row = x[i]
        o = out[i]
        m = row_max(row)
        # Three simple loops over the cached row rather than one: each
        # vectorizes at its best width (float32 exp 8 lanes, float64 sum 4).
        for j in range(c):
            o[j] = exp(row[j] - m)
        s = 0.0
        for j in range(c):
            s += o[j]
        inv = 1.0 / s
        for j in range(c):
            o[j] = o[j] * inv


@dual_jit
def log_softmax_rows(x, out):
    """out[i] = log_softmax(x[i]) = x[i] - max - log(sum(exp(x[i] - max)))."""
    n, c = x.shape
    for i in prange(n):
        row = x[i]
        o = out[i]
        m = row_max(row)
        for j in range(c):
            o[j] = exp(row[j] - m)      # scratch: overwritten below
        s = 0.0
        for j in range(c):
            s += o[j]
        log_s = np.log(s)
        for j in range(c):
            o[j] = (row[j] - m) - log_s


@dual_jit
def cross_entropy_rows(x, target, weight, ignore_index, smoothing, mean, losses, grad,
                       with_grad):
    """Softmax cross-entropy of every row, and optionally its gradient, fused.

    Each row is read from memory once; its max, exp-sum, loss and gradient
    loops then run over the row while it is in the L1/L2 cache.

    With q_ij = (1 - smoothing) * w[t_i] * [j == t_i] + (smoothing / C) * w[j]
    the loss of row i is -sum_j q_ij * log p_ij and its gradient
    p_ij * sum_j q_ij - q_ij, times ``scale`` (1 / sum of w[t_i] over the rows
    that are not ignored for ``mean``, else 1).  Ignored rows get loss 0 and
    gradient 0.

    Writes the per-row (unreduced) losses into ``losses`` (float64, (N,)) and,
    when ``with_grad``, d(reduced loss)/dx into ``grad``; ``grad`` may be
    ``x`` itself (each element is read before it is overwritten).  Returns
    the reduced loss (the sum, divided by the target weights for ``mean``).
    """
    n, c = x.shape
    w_all = 0.0                    # smoothing spreads over every class
    for j in range(c):
        w_all += weight[j]
    w_targets = 0.0                # the "mean" denominator, as in torch
    for i in range(n):
        t = target[i]
        if t != ignore_index:
            w_targets += weight[t]
    scale = 1.0 / w_targets if mean else 1.0
    in_place = with_grad and x.ctypes.data == grad.ctypes.data
    keep = 1.0 - smoothing
    spread = smoothing / c
    for i in prange(n):
        t = target[i]
        if t == ignore_index:
            losses[i] = 0.0
            if with_grad:
                grad[i, :] = 0.0
            continue
        row = x[i]
        m = row_max(row)
        d_t = row[t] - m
        # Separate simple loops over the cached row, not one loop doing
        # everything: each then vectorizes at its own best width (the float32
        # exp 8 lanes wide, the float64 sums 4).  Everything that reads the row
        # comes before the exp loop, which may overwrite it (out=logits).
        sd = 0.0                   # sum_j w_j (x_j - m), for the smoothing term
        if smoothing > 0.0:
            for j in range(c):
                sd += weight[j] * (row[j] - m)
        s = 0.0                    # sum_j exp(x_j - m)
        if with_grad:
            g = grad[i]
            if in_place:
                # one array, not two that might alias: LLVM's runtime overlap
                # check would send the identical row to the scalar loop (4x slower)
                for j in range(c):
                    g[j] = exp(g[j] - m)
            else:
                for j in range(c):
                    g[j] = exp(row[j] - m)
            for j in range(c):
                s += g[j]
        else:
            s = _sum_exp(row, m)
        log_s = np.log(s)
        w_t = weight[t]
        # -log p_j = log_s - d_j >= 0: both terms are sums of non-negative parts
        # (no cancellation).  As in torch, the smoothing term exists only for
        # smoothing > 0 (0 * inf would make an infinite loss NaN), while
        # smoothing = 1 keeps its 0 * nll term (and so torch's NaN for an
        # infinite nll).
        loss = keep * w_t * (log_s - d_t)
        if smoothing > 0.0:
            loss += spread * (w_all * log_s - sd)
        losses[i] = loss
        if with_grad:
            a = (keep * w_t + spread * w_all) / s * scale
            if smoothing > 0.0:
                b = spread * scale
                for j in range(c):
                    g[j] = g[j] * a - b * weight[j]
            else:
                for j in range(c):
                    g[j] = g[j] * a
            g[t] -= keep * w_t * scale
    total = 0.0
    for i in range(n):
        total += losses[i]
    return total / w_targets if mean else total
