"""CPU kernels of the compiled training engine: a whole epoch in one call.

:func:`train_epoch` runs every step of an epoch of :func:`fastnn.train.fit`
for a flat *plan* built by :mod:`fastnn.engine`: gather the batch, forward,
fused loss + gradient, backward, L1/L2 penalties, optimizer update, max-norm,
and the per-step loss, accuracy and penalty.  The plan is a handful of
arrays, not one per layer:

* ``ops`` (int64, one row per layer) and ``fops`` (float64) / ``slopes``
  (the model's dtype): the layer codes and their options, see the ``OP_*``
  and ``F_*`` column names below;
* ``params``, ``grads``, ``state1``, ``state2``: the parameter, gradient and
  optimizer-state arenas, private to the plan (it copies the model's arrays
  in and the results back); ``pinfo`` says where each parameter lies in them;
* ``acts``: one arena for the batch and every layer's output, ``gbuf0`` /
  ``gbuf1``: the backward pass's ping-pong gradient buffers; ``bufs`` the
  batch-norm running statistics (copied in and back likewise).

The engine owns no rule of its own: every per-element function, product
and reduction it runs is a kernel the layer path runs too -- the products of
:mod:`fastnn._cpu.linear`, its fused epilogue and prologue, the activations
of :mod:`fastnn._cpu.activations`, batch norm, layer norm, the counter-based
dropout, the fused losses, the sample-weighted mean and the accuracy counts of
:mod:`fastnn._cpu.losses`, the penalties and max-norm of
:mod:`fastnn._cpu.regularization`, and the update rules of
:mod:`fastnn._cpu.optim`.  So in float64 it takes the layer path's steps bit
for bit; it differs only in scheduling (one call per epoch, arenas instead
of per-layer arrays).  It is compiled once per dtype and layout: widths,
depth and batch size are run-time data.

The BLAS must run on ONE thread while the engine calls it (see
:meth:`fastnn.engine.Plan.epoch`): its thread team, woken for
microsecond-sized products, made an epoch of the 64-128-10 net 170x slower
(480 ms against 2.9).
"""
import math

import numpy as np

from fastnn._config import jit
from fastnn._cpu.activations import activation_backward, activation_forward
from fastnn._cpu.batchnorm import batch_norm_train_backward, batch_norm_train_forward
from fastnn._cpu.dropout import dropout_scale
from fastnn._cpu.layernorm import layer_norm_backward, layer_norm_forward
from fastnn._cpu.linear import (
    NONE,
    activation_grad_bias_sum,
    bias_activation_,
    column_sum,
    matmul_gtx,
    matmul_gw,
    matmul_xwt,
)
from fastnn._cpu.losses import (
    BCE,
    CROSS_ENTROPY,
    HINGE,
    MAE,
    MSE,
    argmax_correct,
    bce_none,
    bce_sum,
    hinge,
    l1_none,
    l1_sum,
    mse_none,
    mse_sum,
    subset_correct,
    total,
    weighted_mean_,
)
from fastnn._cpu.optim import adam_corrections, adam_kernel, sgd_kernel
from fastnn._cpu.regularization import l1_penalty, l2_penalty, max_norm
from fastnn._cpu.softmax import cross_entropy_rows

__all__ = ["CROSS_ENTROPY", "HINGE", "MSE", "MAE", "BCE", "train_epoch"]

# Layer kinds (ops[:, OP_KIND]).
LINEAR, ACTIVATION, BATCHNORM, DROPOUT, LAYERNORM = 0, 1, 2, 3, 4
# ops columns: kind, activation code, input width, output width, weight offset,
# bias offset (-1: none), auxiliary index (dropout: column of ``keys``;
# batch norm: offset of its running mean in ``bufs`` and of its statistics
# in ``stats``; layer norm: offset of its per-row mean, then invstd, in
# ``stats``; weight/bias offsets -1 without affine), offset of the layer's
# input in ``acts``, of its output.
OP_KIND, OP_ACT, OP_IN, OP_OUT, OP_W, OP_B, OP_AUX, OP_X, OP_Y = range(9)
N_OP = 9
# fops columns: batch-norm momentum, eps; dropout p, its keep threshold and
# its scale (fastnn.functional's keep_threshold and survivor_scale).
F_MOMENTUM, F_EPS, F_P, F_THRESHOLD, F_SCALE = range(5)
N_F = 5
# pinfo columns: offset, size, rows, columns (1-D: 1, size), decay flag,
# max-norm flag (2-D decayed weights).
P_OFF, P_SIZE, P_ROWS, P_COLS, P_DECAY, P_MAXNORM = range(6)
N_P = 6
# Optimizer settings (``opt``, float64): kind, lr is per step; then
# momentum, nesterov, beta1, beta2, eps, weight_decay, decoupled, l2, l1, max_norm.
SGD, ADAM = 0, 1
O_KIND, O_MOMENTUM, O_NESTEROV, O_BETA1, O_BETA2, O_EPS, O_WD, O_DECOUPLED, O_L2, O_L1, \
    O_MAXNORM = range(11)
N_O = 11

# The serial twins: numba calls dispatchers, not DualKernel objects.  The
# layer path's launchers pick these same twins below PARALLEL_THRESHOLD.
_bias_activation_ = bias_activation_.serial
_activation_grad_bias_sum = activation_grad_bias_sum.serial
_column_sum = column_sum.serial
_activation_forward = activation_forward.serial
_activation_backward = activation_backward.serial
_batch_norm_train_forward = batch_norm_train_forward.serial
_batch_norm_train_backward = batch_norm_train_backward.serial
_dropout_scale = dropout_scale.serial
_layer_norm_forward = layer_norm_forward.serial
_layer_norm_backward = layer_norm_backward.serial
_cross_entropy_rows = cross_entropy_rows.serial
_hinge = hinge.serial
_mse_sum, _mse_none = mse_sum.serial, mse_none.serial
_l1_sum, _l1_none = l1_sum.serial, l1_none.serial
_bce_sum, _bce_none = bce_sum.serial, bce_none.serial
_l2_penalty, _l1_penalty = l2_penalty.serial, l1_penalty.serial
_max_norm = max_norm.serial

_sgd_kernel, _adam_kernel = sgd_kernel.serial, adam_kernel.serial
_adam_corrections = jit(adam_corrections)


@jit
def _view(arena, offset, rows, cols):
    """The (rows, cols) C-contiguous matrix starting at ``arena[offset]``."""
    return arena[offset:offset + rows * cols].reshape(rows, cols)


@jit
def _gather(X, y_cls, y_reg, sw, order, lo, hi, xb, tb, yb, wb):
    """Rows order[lo:hi] of X into xb, of the targets into tb (labels) or yb (values),
    of the sample weights (if any) into wb."""
    for r in range(hi - lo):
        src = order[lo + r]
        xb[r, :] = X[src]
        if y_cls.size > 0:
            tb[r] = y_cls[src]
        else:
            yb[r, :] = y_reg[src]
        if sw.size > 0:
            wb[r] = sw[src]


@jit
def _linear_forward(op, params, x, y, slope, zeros):
    """A Linear layer (with its fused activation): the layer path's F.linear."""
    w = _view(params, op[OP_W], op[OP_OUT], op[OP_IN])
    matmul_xwt(x, w, y)
    bias = zeros[:op[OP_OUT]] if op[OP_B] < 0 else params[op[OP_B]:op[OP_B] + op[OP_OUT]]
    if op[OP_B] >= 0 or op[OP_ACT] != NONE:
        _bias_activation_(y, bias, op[OP_ACT], slope)


@jit
def _dropout(op, frow, keys, step, src, dst, one):
    """Dropout's kernel on flat views, with the key, threshold and scale the plan took
    from fastnn.functional's dropout (forward and backward alike)."""
    _dropout_scale(src, dst, keys[step, op[OP_AUX]], np.int64(frow[F_THRESHOLD]),
                   dst.dtype.type(frow[F_SCALE]), one)


@jit
def _forward(ops, fops, slopes, params, acts, bufs, stats, keys, step, nb, zeros, one):
    """Training-mode forward of every layer for a batch of ``nb`` rows already in acts."""
    yes = one > 0
    for layer in range(ops.shape[0]):
        op = ops[layer]
        kind = op[OP_KIND]
        x = _view(acts, op[OP_X], nb, op[OP_IN])
        y = _view(acts, op[OP_Y], nb, op[OP_OUT])
        if kind == LINEAR:
            _linear_forward(op, params, x, y, slopes[layer], zeros)
        elif kind == ACTIVATION:
            _activation_forward(x.ravel(), y.ravel(), op[OP_ACT], slopes[layer], one)
        elif kind == BATCHNORM:
            c = op[OP_OUT]
            a = op[OP_AUX]
            _batch_norm_train_forward(
                x, params[op[OP_W]:op[OP_W] + c], params[op[OP_B]:op[OP_B] + c], yes, yes,
                fops[layer, F_EPS], one, bufs[a:a + c], bufs[a + c:a + 2 * c], nb > 0,
                fops[layer, F_MOMENTUM], y, stats[a:a + c], stats[a + c:a + 2 * c])
        elif kind == LAYERNORM:
            c, a = op[OP_OUT], op[OP_AUX]
            # an absent weight/bias is never read: an empty slice stands in
            w = params[:0] if op[OP_W] < 0 else params[op[OP_W]:op[OP_W] + c]
            b = params[:0] if op[OP_B] < 0 else params[op[OP_B]:op[OP_B] + c]
            _layer_norm_forward(x, w, b, op[OP_W] >= 0, op[OP_B] >= 0, fops[layer, F_EPS], y,
                                stats[a:a + nb], stats[a + nb:a + 2 * nb])
        elif fops[layer, F_P] > 0:
            _dropout(op, fops[layer], keys, step, x.ravel(), y.ravel(), one)
        else:
            y[:] = x


@jit
def _mean_loss(code, out, tb, yb, ce_weight, row_loss, g, one):
    """The batch's mean loss and its gradient into g: the loss's ``with_grad`` of the
    layer path (same kernels, same reduction)."""
    nb, yes = out.shape[0], one > 0
    if code == CROSS_ENTROPY:
        return _cross_entropy_rows(out, tb, ce_weight, -100 * one, 0.0 * (one - 1), yes,
                                   row_loss, g, yes)
    if code == HINGE:
        _hinge(out, tb, np.float64(one), 1.0 / nb, row_loss, g, yes)
        return total(row_loss) / nb
    n = out.size
    if code == MSE:
        return _mse_sum(out.ravel(), yb.ravel(), g.ravel(), 2.0 / n, yes, one) / n
    if code == BCE:
        return _bce_sum(out.ravel(), yb.ravel(), g.ravel(), 1.0 / n, yes, one) / n
    return _l1_sum(out.ravel(), yb.ravel(), g.ravel(), 1.0 / n, yes, one) / n


@jit
def _weighted_loss(code, out, tb, yb, ce_weight, wb, losses, g, one):
    """The batch's sample-weighted mean loss and its gradient into g: the per-sample
    losses of reduction "none" weighed by weighted_mean_, as the layer path does."""
    nb, k = out.shape
    yes, unit = one > 0, np.float64(one)
    if code == CROSS_ENTROPY or code == HINGE:
        rows = losses[:nb]
        if code == CROSS_ENTROPY:
            _cross_entropy_rows(out, tb, ce_weight, -100 * one, 0.0 * (one - 1), not yes, rows,
                                g, yes)
        else:
            _hinge(out, tb, unit, unit, rows, g, yes)
        return weighted_mean_(rows.reshape(nb, 1), wb, g)
    flat = losses[:nb * k]
    if code == MSE:
        _mse_none(out.ravel(), yb.ravel(), flat, g.ravel(), yes, one)
    elif code == BCE:
        _bce_none(out.ravel(), yb.ravel(), flat, g.ravel(), yes, one)
    else:
        _l1_none(out.ravel(), yb.ravel(), flat, g.ravel(), yes, one)
    return weighted_mean_(flat.reshape(nb, k), wb, g)


@jit
def _linear_backward(op, params, grads, x, y, dy, dx, slope, partial, first):
    """A Linear layer's gradients (the layer path's F.linear_backward); dz overwrites dy."""
    n_in, n_out = op[OP_IN], op[OP_OUT]
    part = partial[:, :n_out]
    part[:] = 0.0
    if op[OP_ACT] == NONE:
        _column_sum(dy, part)
    else:
        _activation_grad_bias_sum(dy, y, op[OP_ACT], slope, dy, part)
    if op[OP_B] >= 0:
        db = grads[op[OP_B]:op[OP_B] + n_out]
        for j in range(n_out):
            db[j] = part[0, j]
    w = _view(params, op[OP_W], n_out, n_in)
    matmul_gtx(dy, x, _view(grads, op[OP_W], n_out, n_in))
    if not first:
        matmul_gw(dy, w, dx)


@jit
def _backward(ops, fops, slopes, params, grads, acts, stats, keys, step, nb, g0, g1,
              partial, bn_dw, bn_db, one):
    """Backward of every layer; the loss gradient is in g0; writes ``grads``."""
    cur, other = g0, g1
    for layer in range(ops.shape[0] - 1, -1, -1):
        op = ops[layer]
        kind = op[OP_KIND]
        n_in, n_out = op[OP_IN], op[OP_OUT]
        x = _view(acts, op[OP_X], nb, n_in)
        y = _view(acts, op[OP_Y], nb, n_out)
        dy = _view(cur, 0, nb, n_out)
        dx = _view(other, 0, nb, n_in)
        if kind == LINEAR:
            _linear_backward(op, params, grads, x, y, dy, dx, slopes[layer], partial, layer == 0)
            cur, other = other, cur
        elif kind == ACTIVATION:
            flat = dy.ravel()
            _activation_backward(flat, y.ravel(), op[OP_ACT], slopes[layer], flat, one)
        elif kind == BATCHNORM:
            a = op[OP_AUX]
            _batch_norm_train_backward(dy, x, stats[a:a + n_out], stats[a + n_out:a + 2 * n_out],
                                       params[op[OP_W]:op[OP_W] + n_out], one > 0, one, dx,
                                       bn_dw[:n_out], bn_db[:n_out])
            grads[op[OP_W]:op[OP_W] + n_out] = bn_dw[:n_out]
            grads[op[OP_B]:op[OP_B] + n_out] = bn_db[:n_out]
            cur, other = other, cur
        elif kind == LAYERNORM:
            a = op[OP_AUX]
            w = params[:0] if op[OP_W] < 0 else params[op[OP_W]:op[OP_W] + n_out]
            _layer_norm_backward(dy, x, stats[a:a + nb], stats[a + nb:a + 2 * nb], w,
                                 op[OP_W] >= 0, one, dx, bn_dw[:n_out], bn_db[:n_out])
            if op[OP_W] >= 0:
                grads[op[OP_W]:op[OP_W] + n_out] = bn_dw[:n_out]
            if op[OP_B] >= 0:
                grads[op[OP_B]:op[OP_B] + n_out] = bn_db[:n_out]
            cur, other = other, cur
        elif fops[layer, F_P] > 0:
            flat = dy.ravel()
            _dropout(op, fops[layer], keys, step, flat, flat, one)


@jit
def _penalties(params, grads, pinfo, l2, l1, scratch, one):
    """sum over decayed parameters of l2 * sum(w^2) + l1 * sum(|w|); their gradients added.

    As fit's layer path: per parameter the L2 penalty's kernel writes its
    gradient (in the dtype), which is added to the parameter's; then L1's.
    """
    pen = 0.0
    for p in range(pinfo.shape[0]):
        if pinfo[p, P_DECAY] == 0:
            continue
        lo, size = pinfo[p, P_OFF], pinfo[p, P_SIZE]
        w, g, s = params[lo:lo + size], grads[lo:lo + size], scratch[:size]
        if l2 != 0.0:
            pen += l2 * _l2_penalty(w, s, l2, one)
            for i in range(size):
                g[i] += s[i]
        if l1 != 0.0:
            pen += l1 * _l1_penalty(w, s, l1, one)
            for i in range(size):
                g[i] += s[i]
    return pen


@jit
def _optimizer_step(params, grads, state1, state2, pinfo, tcount, opt, lr):
    """One optimizer step over the arenas with fastnn.optim's kernels; counts tcount up.

    Each parameter goes to the kernel as the layer path's launcher gives it:
    2-D as its shape, 1-D as one row (the kernels' loops, and so LLVM's
    contractions, follow the shape: a flat loop rounded AdamW's decay
    differently).
    """
    for p in range(pinfo.shape[0]):
        lo, rows, cols = pinfo[p, P_OFF], pinfo[p, P_ROWS], pinfo[p, P_COLS]
        wd = opt[O_WD] if pinfo[p, P_DECAY] != 0 else 0.0
        t = tcount[p] + 1
        tcount[p] = t
        w, g = _view(params, lo, rows, cols), _view(grads, lo, rows, cols)
        if opt[O_KIND] == SGD:
            buf = _view(state1, lo, rows, cols) if state1.size > 0 else w
            _sgd_kernel(w, g, buf, lr, wd, opt[O_MOMENTUM], opt[O_NESTEROV] != 0.0, t == 1)
        else:
            b1, b2 = opt[O_BETA1], opt[O_BETA2]
            bias1, bias2_sqrt = _adam_corrections(b1, b2, t)
            _adam_kernel(w, g, _view(state1, lo, rows, cols), _view(state2, lo, rows, cols), lr,
                         b1, b2, bias1, bias2_sqrt, opt[O_EPS], wd, opt[O_DECOUPLED] != 0.0)


@jit
def _constrain(params, pinfo, c):
    for p in range(pinfo.shape[0]):
        if pinfo[p, P_MAXNORM] != 0:
            _max_norm(_view(params, pinfo[p, P_OFF], pinfo[p, P_ROWS], pinfo[p, P_COLS]), c)


@jit
def _step_loss(code, out, tb, yb, ce_weight, wb, weighted, losses, g, one):
    """The step's (weighted) mean loss, its gradient into g; then its correct rows, or 0."""
    if weighted:
        value = _weighted_loss(code, out, tb, yb, ce_weight, wb, losses, g, one)
    else:
        value = _mean_loss(code, out, tb, yb, ce_weight, losses[:out.shape[0]], g, one)
    correct = 0
    if math.isfinite(value):
        if code == CROSS_ENTROPY or code == HINGE:
            correct = argmax_correct(out, tb)
        elif code == BCE:
            correct = subset_correct(out, yb)
    return value, correct


@jit
def train_epoch(X, y_cls, y_reg, order, starts, lrs, keys, ops, fops, slopes, params, grads,
                state1, state2, pinfo, tcount, opt, loss_code, acts, bufs, saved_bufs, stats,
                g0, g1, partial, bn_dw, bn_db, zeros, ce_weight, tb, losses, wb, scratch,
                step_loss, step_correct, step_penalty, sw, one):
    """Every step of one epoch; returns the number of steps completed.

    ``one`` is 1: the kernels' chunk count, and where they take a constant
    (a flag, a margin), derived from it.  As run-time data, not literals:
    with literals LLVM specialized the kernels inlined here (a loop of one
    chunk unrolled, a flag's branch folded) and regrouped their sums, which
    then differed from the layer path's calls in the last bit.

    ``sw``: per-sample weights (float64, indexed like X), or an empty array
    for an unweighted run (see :func:`fastnn._cpu.losses.weighted_mean_`).

    Step s trains on rows ``order[starts[s]:starts[s + 1]]`` with learning
    rate ``lrs[s]`` and the dropout keys ``keys[s]``.  Its data loss,
    number of correct argmaxes (classification; for BCE the rows with every
    label right) and L1+L2 penalty go to
    ``step_loss[s]``, ``step_correct[s]``, ``step_penalty[s]``.  A
    non-finite loss stops the epoch before that step's update, with the
    batch-norm running statistics as they were before its forward (the
    return value is then the index of that step, its loss in step_loss).
    """
    n_steps = starts.size - 1
    n_out = ops[ops.shape[0] - 1, OP_OUT]
    y_width = y_reg.shape[1]
    for s in range(n_steps):
        lo, hi = starts[s], starts[s + 1]
        nb = hi - lo
        # Regression targets wait in g1, which the backward pass needs only later.
        yb = _view(g1, 0, nb, y_width)
        _gather(X, y_cls, y_reg, sw, order, lo, hi, _view(acts, 0, nb, X.shape[1]), tb, yb, wb)
        saved_bufs[:] = bufs
        _forward(ops, fops, slopes, params, acts, bufs, stats, keys, s, nb, zeros, one)
        out = _view(acts, ops[ops.shape[0] - 1, OP_Y], nb, n_out)
        value, step_correct[s] = _step_loss(loss_code, out, tb[:nb], yb, ce_weight, wb[:nb],
                                            sw.size > 0, losses, _view(g0, 0, nb, n_out), one)
        step_loss[s] = value
        if not math.isfinite(value):
            bufs[:] = saved_bufs
            return s
        _backward(ops, fops, slopes, params, grads, acts, stats, keys, s, nb, g0, g1,
                  partial, bn_dw, bn_db, one)
        step_penalty[s] = _penalties(params, grads, pinfo, opt[O_L2], opt[O_L1], scratch, one)
        _optimizer_step(params, grads, state1, state2, pinfo, tcount, opt, lrs[s])
        if opt[O_MAXNORM] > 0.0:
            _constrain(params, pinfo, opt[O_MAXNORM])
    return n_steps
