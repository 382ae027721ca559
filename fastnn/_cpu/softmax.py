"""CPU kernels: softmax, log-softmax, fused softmax-cross-entropy.

Every kernel works on the rows of a C-contiguous 2-D array (the public
wrappers move the softmax axis last).  Each row is handled in one place, in
the cache: a vectorized max, one pass that computes ``exp(x - max)`` with the
vectorizable :func:`fastnn._cpu._math.exp` while summing, and one pass that
writes the output.  Sums reach float64 for float32 data too (in blocks of
:data:`_SUM_BLOCK` elements, see :func:`_exp_sum`).
"""
import numpy as np
from numba import prange

from fastnn._config import EXACT_FASTMATH, dual_jit, jit
from fastnn._cpu._math import exp, row_max

# Elements per block of the fused exp + sum loops below: each block is summed
# in the row's dtype (8 float32 lanes, so LLVM keeps the loop at the exp's
# width; a float64 accumulator in the same loop halves it: 1.09 vs 0.63 ns per
# element, serial), the block sums in float64.  Every term is <= 1, so a
# block sum is <= 256: a vectorized float32 block sum adds ~8 values per
# lane (typical error ~1e-7 relative; a sequential one is bounded by
# 256 * 2**-24 = 1.5e-5).  The loops run over
# block views (row[lo:hi]): indexing the row from lo to hi directly kept the
# in-place loop scalar (3.2 vs 0.67 ns per element).
_SUM_BLOCK = 256


@jit
def _exp_sum(row, m, out):
    """``out[j] = exp(row[j] - m)`` for every j; returns ``sum(out)`` in float64.

    ``out`` must not overlap ``row``.  The row is copied first and then
    exponentiated in place: a loop that loads from ``row`` and stores to
    ``out`` gets a runtime overlap check from LLVM, whose scalar fallback
    (taken when ``out`` happens to lie just past ``row`` on the heap) sums in
    another order, so the last bits of the result depended on where the
    allocator put the output.  The copy of an L1-resident row costs little
    next to the exp.
    """
    for j in range(row.size):
        out[j] = row[j]
    return _exp_sum_(out, m)


@jit
def _exp_sum_(row, m):
    """:func:`_exp_sum` in place, over one array.

    Called as ``_exp_sum(g, m, g)`` the loop would not vectorize: LLVM cannot
    prove the two views equal, and the identical row fails its runtime
    overlap check (4x slower).
    """
    c = row.size
    s = 0.0
    for lo in range(0, c, _SUM_BLOCK):
        seg = row[lo:lo + _SUM_BLOCK]
        block = row.dtype.type(0)
        for j in range(seg.size):
            e = exp(seg[j] - m)
            seg[j] = e
            block += e
        s += block
    return s


@jit
def _sum_exp(row, m):
    """``sum(exp(row - m))`` in float64, summed in blocks as :func:`_exp_sum`."""
    c = row.size
    s = 0.0
    for lo in range(0, c, _SUM_BLOCK):
        seg = row[lo:lo + _SUM_BLOCK]
        block = row.dtype.type(0)
        for j in range(seg.size):
            block += exp(seg[j] - m)
        s += block
    return s


@dual_jit
def softmax_rows(x, out):
    """out[i] = softmax(x[i]) for every row."""
    n, c = x.shape
    for i in prange(n):
        row = x[i]
        o = out[i]
        m = row_max(row)
        inv = 1.0 / _exp_sum(row, m, o)
        for j in range(c):
            o[j] = o[j] * inv


# EXACT_FASTMATH: under ``reassoc`` LLVM hoisted ``m + log_s`` out of the loop
# and wrote x_j - (m + log_s), which loses every digit of log_s below ulp(m):
# [1e16, 1e16] gave [0, 0] instead of -log(2).  The exp-sum keeps its flags.
@dual_jit(fastmath=EXACT_FASTMATH)
def log_softmax_rows(x, out):
    """out[i] = log_softmax(x[i]) = (x[i] - max) - log(sum(exp(x[i] - max)))."""
    n, c = x.shape
    for i in prange(n):
        row = x[i]
        o = out[i]
        m = row_max(row)
        log_s = np.log(_sum_exp(row, m))
        for j in range(c):
            o[j] = (row[j] - m) - log_s


@jit
def _weighted_offsets(weight, row, m):
    """sum_j w_j (x_j - m) in float64 (a plain sum: reassociated to vectorize)."""
    sd = 0.0
    for j in range(row.size):
        sd += weight[j] * (row[j] - m)
    return sd


# EXACT_FASTMATH: the row's loss log_s - (x_t - m) must not be regrouped
# around the max (the log_softmax case above), and the "mean" gradient
# divides by the target-weight sum, which may be subnormal: under ``arcp``
# its reciprocal was inf and the gradient NaN (class weights of 1e-320).
# The vectorized loops (max, exp-sum, smoothing sum) keep their own flags.
@dual_jit(fastmath=EXACT_FASTMATH)
def cross_entropy_rows(x, target, weight, ignore_index, smoothing, mean, losses, grad,
                       with_grad):
    """Softmax cross-entropy of every row, and optionally its gradient, fused.

    Each row is read from memory once; its max, exp-sum, loss and gradient
    loops then run over the row while it is in the L1/L2 cache.

    With q_ij = (1 - smoothing) * w[t_i] * [j == t_i] + (smoothing / C) * w[j]
    the loss of row i is -sum_j q_ij * log p_ij and its gradient
    p_ij * sum_j q_ij - q_ij, divided by the sum of w[t_i] over the rows that
    are not ignored for ``mean`` (else by 1).  Ignored rows get loss 0 and
    gradient 0.

    Writes the per-row (unreduced) losses into ``losses`` (float64, (N,)) and,
    when ``with_grad``, d(reduced loss)/dx into ``grad``; ``grad`` may be
    ``x`` itself (each element is read before it is overwritten).  Returns
    the reduced loss (the sum, divided by the target weights for ``mean``).
    Every weight is divided by that sum before it multiplies anything
    (w_t / sum <= 1), so a subnormal sum, as class weights of 1e-320 give,
    neither overflows nor makes the gradient NaN.
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
    denom = w_targets if mean else 1.0
    in_place = with_grad and x.ctypes.data == grad.ctypes.data
    keep = 1.0 - smoothing
    spread = smoothing / c
    # The smoothing part of the gradient, spread * w_j / denom, once per call.
    spread_w = np.empty(c if smoothing > 0.0 else 0)
    for j in range(spread_w.size):
        spread_w[j] = spread * (weight[j] / denom)
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
        # everything: each then vectorizes at its own best width.  Everything
        # that reads the row comes before the exp loop, which may overwrite
        # it (out=logits).
        sd = 0.0                   # sum_j w_j (x_j - m), for the smoothing term
        if smoothing > 0.0:
            sd = _weighted_offsets(weight, row, m)
        s = 0.0                    # sum_j exp(x_j - m)
        if with_grad:
            g = grad[i]
            s = _exp_sum_(g, m) if in_place else _exp_sum(row, m, g)
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
            a = (keep * (w_t / denom) + spread * (w_all / denom)) / s
            if smoothing > 0.0:
                for j in range(c):
                    g[j] = g[j] * a - spread_w[j]
            else:
                for j in range(c):
                    g[j] = g[j] * a
            g[t] -= keep * (w_t / denom)
    total = 0.0
    for i in range(n):
        total += losses[i]
    return total / w_targets if mean else total
