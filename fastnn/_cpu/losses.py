"""CPU kernels: multiclass hinge (SVM), MSE, MAE and binary cross-entropy with logits,
each fused with its gradient; and what training does with a batch's losses.

Every ``*_with_grad`` kernel reads its inputs once and writes the gradient in
the same pass (the forward-only variants skip the write).  Losses accumulate
in float64; gradients are computed in float64 and rounded once to the input
dtype.  ``gscale`` carries the reduction (1/N or 1/n for "mean", 1 otherwise).

The training helpers at the end (:func:`total`, :func:`weighted_mean_`,
:func:`argmax_correct`, :func:`subset_correct`) are the one definition of
a batch's summed loss, its sample-weighted mean and its accuracy count: the
layer path (through :mod:`fastnn._cpu.backend`) and the compiled engine both
call them.
"""
import math

import numpy as np
from numba import prange

from fastnn._config import EXACT_FASTMATH, dual_jit, jit
from fastnn._cpu._math import sign


@jit
def _margins(s, sy, margin, grad, gscale, with_grad):
    """(sum of max(0, m_j), number of active m_j) over a span of classes j != y.

    m_j = s_j - s_y + margin; a margin counts only when strictly positive.
    A NaN m_j makes the sum NaN (the caller then fills the row's gradient
    with NaN).  Selects, not branches, so that the loop vectorizes; the
    caller splits the row around y so that no per-element "j != y" test is
    needed.
    """
    acc = 0.0
    count = 0.0
    if with_grad:
        for j in range(s.size):
            m = (np.float64(s[j]) - sy) + margin
            # A product, not a select of gscale: this form vectorizes (a
            # select between gscale and 0 ran 12x slower).
            active = 1.0 if m > 0.0 else 0.0
            acc += m if not (m <= 0.0) else 0.0
            count += active
            grad[j] = gscale * active
    else:
        for j in range(s.size):
            m = (np.float64(s[j]) - sy) + margin
            acc += m if not (m <= 0.0) else 0.0
    return acc, count


@jit
def _hinge_row(s, y, margin, grad, gscale, with_grad):
    """Loss of one row ``s`` with label ``y``; with_grad also fills the row's gradient."""
    sy = np.float64(s[y])
    acc_lo, count_lo = _margins(s[:y], sy, margin, grad[:y], gscale, with_grad)
    acc_hi, count_hi = _margins(s[y + 1:], sy, margin, grad[y + 1:], gscale, with_grad)
    loss = acc_lo + acc_hi
    if with_grad:
        grad[y] = -gscale * (count_lo + count_hi)
        if loss != loss:
            # NaN in the row (a score, or s_y): its whole gradient is NaN too.
            grad[:] = np.nan
    return loss


@dual_jit
def hinge(scores, target, margin, gscale, row_loss, grad, with_grad):
    """Multiclass SVM loss per row: row_loss[i] = sum_{j != y_i} max(0, s_ij - s_iy + margin).

    With ``with_grad``: grad[i, j] = gscale * [m_ij > 0] for j != y_i and
    grad[i, y_i] = -gscale * (number of active margins).  A NaN margin makes
    the row's loss and gradient NaN (torch silently skips it).
    """
    for i in prange(scores.shape[0]):  # range in the serial twin
        # grad is (N, 0) without with_grad, so grad[i] is always a contiguous row
        row_loss[i] = _hinge_row(scores[i], target[i], margin, grad[i], gscale, with_grad)


@jit
def _mse_range(pred, target, grad, gscale, with_grad):
    acc = 0.0
    if with_grad:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            acc += r * r
            grad[i] = r * gscale
    else:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            acc += r * r
    return acc


@jit
def _l1_range(pred, target, grad, gscale, with_grad):
    acc = 0.0
    if with_grad:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            acc += abs(r)
            grad[i] = gscale * sign(r)
    else:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            acc += abs(r)
    return acc


@dual_jit
def mse_sum(pred, target, grad, gscale, with_grad, n_chunks):
    """sum((pred - target)**2) in float64; with_grad: grad = gscale * (pred - target).

    ``gscale`` is 2/n for "mean" and 2 for "sum".  Flat C-contiguous arrays.
    """
    n = pred.size
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        partial[c] = _mse_range(pred[lo:hi], target[lo:hi], grad[lo:hi] if with_grad else grad,
                                gscale, with_grad)
    return partial.sum()


@dual_jit
def l1_sum(pred, target, grad, gscale, with_grad, n_chunks):
    """sum(|pred - target|) in float64; with_grad: grad = gscale * sign(pred - target)."""
    n = pred.size
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        partial[c] = _l1_range(pred[lo:hi], target[lo:hi], grad[lo:hi] if with_grad else grad,
                               gscale, with_grad)
    return partial.sum()


@jit
def _mse_none_range(pred, target, loss, grad, with_grad):
    if with_grad:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            loss[i] = r * r
            grad[i] = 2.0 * r
    else:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            loss[i] = r * r


@jit
def _l1_none_range(pred, target, loss, grad, with_grad):
    if with_grad:
        for i in range(pred.size):
            r = np.float64(pred[i]) - np.float64(target[i])
            loss[i] = abs(r)
            grad[i] = sign(r)
    else:
        for i in range(pred.size):
            loss[i] = abs(np.float64(pred[i]) - np.float64(target[i]))


@dual_jit
def mse_none(pred, target, loss, grad, with_grad, n_chunks):
    """Elementwise loss = (pred - target)**2 and, with_grad, grad = 2 * (pred - target)."""
    n = pred.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _mse_none_range(pred[lo:hi], target[lo:hi], loss[lo:hi],
                        grad[lo:hi] if with_grad else grad, with_grad)


@dual_jit
def l1_none(pred, target, loss, grad, with_grad, n_chunks):
    """Elementwise loss = |pred - target| and, with_grad, grad = sign(pred - target)."""
    n = pred.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _l1_none_range(pred[lo:hi], target[lo:hi], loss[lo:hi],
                       grad[lo:hi] if with_grad else grad, with_grad)


# ---------------------------------------------------------------- BCE with logits

# EXACT_FASTMATH: the loss's last term is tiny next to the first two, which
# cancel (x = 50, t = 1: 50 - 50 + 1.9e-22); under ``reassoc`` LLVM added it
# to x before the subtraction and the loss became 0 (x = 30: 9.2371e-14
# instead of 9.3576e-14).  The flags are per instruction, so the kernels that
# inline this term keep their own for their sums.
@jit(fastmath=EXACT_FASTMATH)
def bce_term(x, t):
    """(loss, dloss/dx) of one logit ``x`` (float64) against the target ``t`` (float64).

    loss = max(x, 0) - x t + log1p(exp(-|x|)) and sigmoid(x) - t share one
    exp of a non-positive number, so neither overflows at any finite logit.
    Evaluated left to right: the cancelling part first, then the small
    log1p term, so a confident logit keeps its tiny loss (x = 50, t = 1:
    1.9e-22, as for its mirror x = -50, t = 0).  The gradient is written so
    that both mirrors are exact too: for x >= 0, sigmoid(x) - t is
    (1 - t) - e / (1 + e) (the 1 of 1 / (1 + e) would swallow e).  A NaN
    logit gives NaN for both (``x > 0`` and ``x >= 0`` are false, and the
    NaN flows through exp(-|x|)).
    """
    e = math.exp(-abs(x))
    loss = ((x if x > 0.0 else 0.0) - x * t) + math.log1p(e)
    small = e / (1.0 + e)       # sigmoid(-|x|)
    grad = ((1.0 - t) - small) if x >= 0.0 else (small - t)
    return loss, grad


@jit
def _bce_range(pred, target, grad, gscale, with_grad):
    acc = 0.0
    if with_grad:
        for i in range(pred.size):
            v, d = bce_term(np.float64(pred[i]), np.float64(target[i]))
            acc += v
            grad[i] = d * gscale
    else:
        for i in range(pred.size):
            acc += bce_term(np.float64(pred[i]), np.float64(target[i]))[0]
    return acc


@dual_jit
def bce_sum(pred, target, grad, gscale, with_grad, n_chunks):
    """sum of the BCE-with-logits terms in float64; with_grad: grad = gscale * (sigmoid - target).

    ``gscale`` is 1/n for "mean" and 1 for "sum".  Flat C-contiguous arrays.
    """
    n = pred.size
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        partial[c] = _bce_range(pred[lo:hi], target[lo:hi], grad[lo:hi] if with_grad else grad,
                                gscale, with_grad)
    return partial.sum()


@jit
def _bce_none_range(pred, target, loss, grad, with_grad):
    for i in range(pred.size):
        v, d = bce_term(np.float64(pred[i]), np.float64(target[i]))
        loss[i] = v
        if with_grad:
            grad[i] = d


@dual_jit
def bce_none(pred, target, loss, grad, with_grad, n_chunks):
    """Elementwise BCE-with-logits terms into ``loss``; with_grad, grad = sigmoid(pred) - target."""
    n = pred.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _bce_none_range(pred[lo:hi], target[lo:hi], loss[lo:hi],
                        grad[lo:hi] if with_grad else grad, with_grad)


# ---------------------------------------------------------------- training helpers

# Loss codes: how the compiled engine names the loss of a plan (the table of
# losses, fastnn._loss_table, gives each loss its code).
CROSS_ENTROPY, HINGE, MSE, MAE, BCE = 0, 1, 2, 3, 4


@jit
def total(a):
    """The float64 sum of a 1-D array (how a batch's per-row losses are summed)."""
    acc = 0.0
    for i in range(a.size):
        acc += a[i]
    return acc


# EXACT_FASTMATH: the weights are divided by the batch's total, which may be
# subnormal (a batch of tiny weights); ``arcp`` made that w * (1 / total), inf.
@jit(fastmath=EXACT_FASTMATH)
def weighted_mean_(losses, w, grad):
    """A batch's weighted mean loss ``sum_i w_i l_i / sum_i w_i``; ``grad`` made its gradient.

    ``losses`` (n, m): the per-sample losses of reduction "none" (m = 1:
    one per row, as cross-entropy and hinge; else one per output, whose
    mean is the sample's loss), each rounded to ``grad``'s dtype as "none"
    returns them; ``w`` (n,) float64 weights; ``grad`` (n, k): the gradient
    of the SUM of ``losses``, multiplied in place by ``w_i / (m sum(w))`` per
    row.  A zero total weight gives 0 and a zero gradient.
    """
    n, m = losses.shape
    tot = 0.0
    for r in range(n):
        tot += w[r]
    value = 0.0
    for r in range(n):
        c = w[r] / (tot * m) if tot > 0.0 else 0.0
        row = 0.0
        for j in range(m):
            row += np.float64(grad.dtype.type(losses[r, j]))
        value += c * row
        cg = grad.dtype.type(c)
        for j in range(grad.shape[1]):
            grad[r, j] = grad[r, j] * cg
    return value


@jit
def argmax_correct(out, labels):
    """How many rows' argmax equals the label (numpy's argmax: the first maximum, or
    the first NaN)."""
    count = 0
    for i in range(out.shape[0]):
        row = out[i]
        best = 0
        for j in range(row.size):
            v = row[j]
            if v != v:
                best = j
                break
            if v > row[best]:
                best = j
        count += best == labels[i]
    return count


@jit
def subset_correct(out, targets):
    """How many rows have every label right: logit > 0 exactly where the target > 0.5."""
    count = 0
    for i in range(out.shape[0]):
        right = 1
        for j in range(out.shape[1]):
            if (out[i, j] > 0) != (targets[i, j] > 0.5):
                right = 0
                break
        count += right
    return count
