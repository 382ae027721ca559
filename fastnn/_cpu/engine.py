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

The per-layer work reuses the package's own kernels (the fused linear
epilogue and prologue, batch norm, layer norm, the counter-based dropout,
the fused losses, max-norm, and the update rules of :mod:`fastnn.optim`), so the
engine computes what the layer-by-layer path computes.

The matrix products are ``np.dot`` calls, which numba sends to the BLAS
(scipy's OpenBLAS) without a Python round trip.  Plain compiled loops were
measured against it (float32, one BLAS thread, the three products of a
layer's step, medians of 7): the BLAS won at every size of the lesson's
nets, from 32x16x2 (0.4 us vs 0.6) through 32x30x16 (1.4 vs 7.5) and
64x64x128 (32 vs 310) to 32x256x256 (329 vs 810); so there is no switch.
The BLAS must run on ONE thread while the engine calls it (see
:meth:`fastnn.engine.Plan.epoch`): its thread team, woken for
microsecond-sized products, made an epoch of the 64-128-10 net 170x slower
(480 ms against 2.9).
"""
import math

import numpy as np

from fastnn._config import EXACT_FASTMATH, jit
from fastnn._cpu.batchnorm import batch_norm_train_backward, batch_norm_train_forward
from fastnn._cpu.dropout import dropout_scale
from fastnn._cpu.layernorm import layer_norm_backward, layer_norm_forward
from fastnn._cpu.linear import (
    LEAKY_RELU,
    NONE,
    RELU,
    TANH,
    activation_grad_bias_sum,
    bias_activation_,
    column_sum,
)
from fastnn._cpu.losses import bce_sum, bce_term, hinge, l1_sum, mse_sum
from fastnn._cpu.optim import adam_rule, sgd_rule
from fastnn._cpu.regularization import max_norm
from fastnn._cpu.rng import GOLDEN, mix64
from fastnn._cpu.softmax import cross_entropy_rows

# Layer kinds (ops[:, OP_KIND]).
LINEAR, ACTIVATION, BATCHNORM, DROPOUT, LAYERNORM = 0, 1, 2, 3, 4
# ops columns: kind, activation code, input width, output width, weight offset,
# bias offset (-1: none), auxiliary index (dropout: column of ``seeds``;
# batch norm: offset of its running mean in ``bufs`` and of its statistics
# in ``stats``; layer norm: offset of its per-row mean, then invstd, in
# ``stats``; weight/bias offsets -1 without affine), offset of the layer's
# input in ``acts``, of its output.
OP_KIND, OP_ACT, OP_IN, OP_OUT, OP_W, OP_B, OP_AUX, OP_X, OP_Y = range(9)
N_OP = 9
# fops columns: batch-norm momentum, eps; dropout p and its keep threshold
# round(p * 2**32) (as in fastnn.functional.dropout); dropout's scale.
F_MOMENTUM, F_EPS, F_P, F_THRESHOLD, F_SCALE = range(5)
N_F = 5
# pinfo columns: offset, size, rows, columns (1-D: 1, size), decay flag,
# max-norm flag (2-D decayed weights).
P_OFF, P_SIZE, P_ROWS, P_COLS, P_DECAY, P_MAXNORM = range(6)
N_P = 6
# Loss codes.
CROSS_ENTROPY, HINGE, MSE, MAE, BCE = 0, 1, 2, 3, 4
# Optimizer settings (``opt``, float64): kind, lr is per step; then
# momentum, nesterov, beta1, beta2, eps, weight_decay, decoupled, l2, l1, max_norm.
SGD, ADAM = 0, 1
O_KIND, O_MOMENTUM, O_NESTEROV, O_BETA1, O_BETA2, O_EPS, O_WD, O_DECOUPLED, O_L2, O_L1, \
    O_MAXNORM = range(11)
N_O = 11

# The serial twins: numba calls dispatchers, not DualKernel objects.
_bias_activation_ = bias_activation_.serial
_activation_grad_bias_sum = activation_grad_bias_sum.serial
_column_sum = column_sum.serial
_batch_norm_train_forward = batch_norm_train_forward.serial
_batch_norm_train_backward = batch_norm_train_backward.serial
_dropout_scale = dropout_scale.serial
_layer_norm_forward = layer_norm_forward.serial
_layer_norm_backward = layer_norm_backward.serial
_hinge = hinge.serial
_mse_sum = mse_sum.serial
_l1_sum = l1_sum.serial
_bce_sum = bce_sum.serial
_max_norm = max_norm.serial
_cross_entropy_rows = cross_entropy_rows.serial

_sgd_rule = jit(sgd_rule, inline="always")
_adam_rule = jit(adam_rule, inline="always")


@jit
def _view(arena, offset, rows, cols):
    """The (rows, cols) C-contiguous matrix starting at ``arena[offset]``."""
    return arena[offset:offset + rows * cols].reshape(rows, cols)


@jit
def matmul_xwt(x, w, y):
    """``y = x @ w.T`` for C-contiguous x (n, k), w (m, k), y (n, m)."""
    np.dot(x, w.T, y)


@jit
def matmul_gw(g, w, dx):
    """``dx = g @ w`` for g (n, m), w (m, k), dx (n, k)."""
    np.dot(g, w, dx)


@jit
def matmul_gtx(g, x, dw):
    """``dw = g.T @ x`` for g (n, m), x (n, k), dw (m, k)."""
    np.dot(g.T, x, dw)


@jit
def _activation_forward(x, y, act, slope):
    """A standalone activation layer (fastnn.nn.ReLU & co.), with the layers' formulas."""
    n, m = x.shape
    half = y.dtype.type(0.5)
    for b in range(n):
        xb = x[b]
        yb = y[b]
        for j in range(m):
            v = xb[j]
            if act == RELU:
                yb[j] = v if (v > 0 or np.isnan(v)) else 0   # as np.maximum: NaN passes
            elif act == LEAKY_RELU:
                yb[j] = v if v > 0 else v * slope
            elif act == TANH:
                yb[j] = np.tanh(v)
            else:
                yb[j] = half * (1 + np.tanh(half * v))


@jit
def _activation_backward_(g, y, act, slope):
    """In place: g = g * act'(y), from the saved output (the layers' formulas)."""
    n, m = g.shape
    for b in range(n):
        gb = g[b]
        yb = y[b]
        for j in range(m):
            o = yb[j]
            if act == RELU:
                gb[j] = 0 if o <= 0 else gb[j]
            elif act == LEAKY_RELU:
                gb[j] = gb[j] if o > 0 else gb[j] * slope
            elif act == TANH:
                gb[j] = gb[j] * (1 - o * o)
            else:
                gb[j] = gb[j] * o * (1 - o)


@jit
def _gather(X, y_cls, y_reg, order, lo, hi, xb, tb, yb):
    """Rows order[lo:hi] of X into xb, of the targets into tb (labels) or yb (values)."""
    for r in range(hi - lo):
        src = order[lo + r]
        xb[r, :] = X[src]
        if y_cls.size > 0:
            tb[r] = y_cls[src]
        else:
            yb[r, :] = y_reg[src]


@jit
def _forward(ops, fops, slopes, params, acts, bufs, stats, seeds, step, nb, zeros):
    """Training-mode forward of every layer for a batch of ``nb`` rows already in acts."""
    for layer in range(ops.shape[0]):
        op = ops[layer]
        kind = op[OP_KIND]
        x = _view(acts, op[OP_X], nb, op[OP_IN])
        y = _view(acts, op[OP_Y], nb, op[OP_OUT])
        if kind == LINEAR:
            w = _view(params, op[OP_W], op[OP_OUT], op[OP_IN])
            matmul_xwt(x, w, y)
            bias = zeros[:op[OP_OUT]] if op[OP_B] < 0 else params[op[OP_B]:op[OP_B] + op[OP_OUT]]
            if op[OP_B] >= 0 or op[OP_ACT] != NONE:
                _bias_activation_(y, bias, op[OP_ACT], slopes[layer])
        elif kind == ACTIVATION:
            _activation_forward(x, y, op[OP_ACT], slopes[layer])
        elif kind == BATCHNORM:
            c = op[OP_OUT]
            a = op[OP_AUX]
            _batch_norm_train_forward(
                x, params[op[OP_W]:op[OP_W] + c], params[op[OP_B]:op[OP_B] + c], True, True,
                fops[layer, F_EPS], 1, bufs[a:a + c], bufs[a + c:a + 2 * c], nb > 0,
                fops[layer, F_MOMENTUM], y, stats[a:a + c], stats[a + c:a + 2 * c])
        elif kind == LAYERNORM:
            c, a = op[OP_OUT], op[OP_AUX]
            # an absent weight/bias is never read: an empty slice stands in
            w = params[:0] if op[OP_W] < 0 else params[op[OP_W]:op[OP_W] + c]
            b = params[:0] if op[OP_B] < 0 else params[op[OP_B]:op[OP_B] + c]
            _layer_norm_forward(x, w, b, op[OP_W] >= 0, op[OP_B] >= 0, fops[layer, F_EPS], y,
                                stats[a:a + nb], stats[a + nb:a + 2 * nb])
        else:
            if fops[layer, F_P] > 0:
                key = mix64(np.uint64(seeds[step, op[OP_AUX]]) + GOLDEN)
                _dropout_scale(x.ravel(), y.ravel(), key, np.int64(fops[layer, F_THRESHOLD]),
                                     y.dtype.type(fops[layer, F_SCALE]), 1)
            else:
                y[:] = x


@jit
def _loss(code, out, tb, yb, ce_weight, row_loss, g):
    """Mean loss of the batch's outputs, its gradient into g (fit's reductions)."""
    nb = out.shape[0]
    if code == CROSS_ENTROPY:
        return _cross_entropy_rows(out, tb, ce_weight, -100, 0.0, True, row_loss, g, True)
    if code == HINGE:
        _hinge(out, tb, 1.0, 1.0 / nb, row_loss, g, True)
        total = 0.0
        for i in range(nb):
            total += row_loss[i]
        return total / nb
    n = out.size
    if code == MSE:
        return _mse_sum(out.ravel(), yb.ravel(), g.ravel(), 2.0 / n, True, 1) / n
    if code == BCE:
        return _bce_sum(out.ravel(), yb.ravel(), g.ravel(), 1.0 / n, True, 1) / n
    return _l1_sum(out.ravel(), yb.ravel(), g.ravel(), 1.0 / n, True, 1) / n


# EXACT_FASTMATH: the weights are divided by the batch's total, which may be
# subnormal (a batch of tiny weights); ``arcp`` made that w * (1 / total), inf,
# and the step a DivergenceError.
@jit(fastmath=EXACT_FASTMATH)
def _reweight(code, out, yb, order, lo, sw, row_loss, g):
    """The batch's weighted mean loss ``sum(w_i l_i) / sum(w_i)``, g rescaled to its gradient.

    ``g`` holds the gradient of the unweighted mean (each row's share is
    1/nb of its own loss's gradient), so row i is multiplied by
    ``nb * w_i / sum(w)``; l_i is the row's loss (``row_loss`` for
    classification, the mean over outputs for mse/mae/bce).  Zero total weight:
    a zero gradient and a zero loss.
    """
    nb, k = out.shape
    total = 0.0
    for r in range(nb):
        total += sw[order[lo + r]]
    value = 0.0
    for r in range(nb):
        w = sw[order[lo + r]]
        if code == CROSS_ENTROPY or code == HINGE:
            row = row_loss[r]
        else:
            row = 0.0
            for j in range(k):
                if code == BCE:
                    row += bce_term(np.float64(out[r, j]), np.float64(yb[r, j]))[0]
                    continue
                d = np.float64(out[r, j]) - np.float64(yb[r, j])
                row += d * d if code == MSE else abs(d)
            row /= k
        c = nb * w / total if total > 0.0 else 0.0
        if total > 0.0:
            value += (w / total) * row      # w * row would underflow for a tiny w
        for j in range(g.shape[1]):
            g[r, j] = g[r, j] * c
    return value


@jit
def _correct(out, tb):
    """How many rows' argmax (first maximum, as numpy) equals the label."""
    count = 0
    for i in range(out.shape[0]):
        row = out[i]
        best = 0
        for j in range(1, row.size):
            if row[j] > row[best]:
                best = j
        count += best == tb[i]
    return count


@jit
def _subset_correct(out, yb):
    """How many rows have every label right: logit > 0 exactly where the target > 0.5."""
    count = 0
    for i in range(out.shape[0]):
        right = 1
        for j in range(out.shape[1]):
            if (out[i, j] > 0) != (yb[i, j] > 0.5):
                right = 0
                break
        count += right
    return count


@jit
def _backward(ops, fops, slopes, params, grads, acts, stats, seeds, step, nb, g0, g1,
              partial, bn_dw, bn_db):
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
            part = partial[:, :n_out]
            part[:] = 0.0
            if op[OP_ACT] == NONE:
                _column_sum(dy, part)
            else:
                _activation_grad_bias_sum(dy, y, op[OP_ACT], slopes[layer], dy, part)
            if op[OP_B] >= 0:
                db = grads[op[OP_B]:op[OP_B] + n_out]
                for j in range(n_out):
                    db[j] = part[0, j]
            w = _view(params, op[OP_W], n_out, n_in)
            matmul_gtx(dy, x, _view(grads, op[OP_W], n_out, n_in))
            if layer > 0:
                matmul_gw(dy, w, dx)
                cur, other = other, cur
        elif kind == ACTIVATION:
            _activation_backward_(dy, y, op[OP_ACT], slopes[layer])
        elif kind == BATCHNORM:
            a = op[OP_AUX]
            _batch_norm_train_backward(dy, x, stats[a:a + n_out], stats[a + n_out:a + 2 * n_out],
                                             params[op[OP_W]:op[OP_W] + n_out], True, 1, dx,
                                             bn_dw[:n_out], bn_db[:n_out])
            grads[op[OP_W]:op[OP_W] + n_out] = bn_dw[:n_out]
            grads[op[OP_B]:op[OP_B] + n_out] = bn_db[:n_out]
            cur, other = other, cur
        elif kind == LAYERNORM:
            a = op[OP_AUX]
            w = params[:0] if op[OP_W] < 0 else params[op[OP_W]:op[OP_W] + n_out]
            _layer_norm_backward(dy, x, stats[a:a + nb], stats[a + nb:a + 2 * nb], w,
                                 op[OP_W] >= 0, 1, dx, bn_dw[:n_out], bn_db[:n_out])
            if op[OP_W] >= 0:
                grads[op[OP_W]:op[OP_W] + n_out] = bn_dw[:n_out]
            if op[OP_B] >= 0:
                grads[op[OP_B]:op[OP_B] + n_out] = bn_db[:n_out]
            cur, other = other, cur
        elif fops[layer, F_P] > 0:
            key = mix64(np.uint64(seeds[step, op[OP_AUX]]) + GOLDEN)
            flat = dy.ravel()
            _dropout_scale(flat, flat, key, np.int64(fops[layer, F_THRESHOLD]),
                                 dy.dtype.type(fops[layer, F_SCALE]), 1)


@jit
def _penalties(params, grads, pinfo, l2, l1):
    """sum over decayed parameters of l2 * sum(w^2) + l1 * sum(|w|); their gradients added.

    As fit's layer path: per parameter the L2 gradient (rounded to the
    dtype) is added first, then the L1 gradient; the penalty sums in float64.
    """
    total = 0.0
    for p in range(pinfo.shape[0]):
        if pinfo[p, P_DECAY] == 0:
            continue
        lo = pinfo[p, P_OFF]
        w = params[lo:lo + pinfo[p, P_SIZE]]
        g = grads[lo:lo + pinfo[p, P_SIZE]]
        if l2 != 0.0:
            acc = 0.0
            for i in range(w.size):
                v = np.float64(w[i])
                acc += v * v
                g[i] += g.dtype.type(v * (2.0 * l2))
            total += l2 * acc
        if l1 != 0.0:
            acc = 0.0
            for i in range(w.size):
                v = np.float64(w[i])
                acc += abs(v)
                s = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else v)
                g[i] += g.dtype.type(l1 * s)
            total += l1 * acc
    return total


@jit
def _sgd_span(w, g, buf, lr, wd, momentum, nesterov, first):
    """SGD over one parameter's 1-D views (a separate function: plain views vectorize)."""
    for i in range(w.size):
        b = np.float64(buf[i]) if momentum != 0.0 and not first else 0.0
        nw, nb = _sgd_rule(np.float64(w[i]), np.float64(g[i]), b, lr, wd, momentum, nesterov,
                           first)
        w[i] = nw
        if momentum != 0.0:
            buf[i] = nb


@jit
def _adam_span(w, g, m, v, lr, b1, b2, bias1, bias2_sqrt, eps, wd, decoupled):
    """Adam over one parameter's 1-D views."""
    for i in range(w.size):
        nw, nm, nv = _adam_rule(np.float64(w[i]), np.float64(g[i]), np.float64(m[i]),
                                np.float64(v[i]), lr, b1, b2, bias1, bias2_sqrt, eps, wd,
                                decoupled)
        w[i] = nw
        m[i] = nm
        v[i] = nv


@jit
def _optimizer_step(params, grads, state1, state2, pinfo, tcount, opt, lr):
    """One optimizer step over the arenas with the rules of fastnn.optim; counts tcount up."""
    for p in range(pinfo.shape[0]):
        lo = pinfo[p, P_OFF]
        hi = lo + pinfo[p, P_SIZE]
        wd = opt[O_WD] if pinfo[p, P_DECAY] != 0 else 0.0
        t = tcount[p] + 1
        tcount[p] = t
        w, g = params[lo:hi], grads[lo:hi]
        if opt[O_KIND] == SGD:
            buf = state1[lo:hi] if state1.size > 0 else w
            _sgd_span(w, g, buf, lr, wd, opt[O_MOMENTUM], opt[O_NESTEROV] != 0.0, t == 1)
        else:
            b1, b2 = opt[O_BETA1], opt[O_BETA2]
            m, v = state1[lo:hi], state2[lo:hi]
            bias1, bias2_sqrt = 1.0 - b1 ** t, math.sqrt(1.0 - b2 ** t)
            if wd == 0.0:   # a constant 0 lets the compiler drop the decay branches
                _adam_span(w, g, m, v, lr, b1, b2, bias1, bias2_sqrt, opt[O_EPS], 0.0, False)
            else:
                _adam_span(w, g, m, v, lr, b1, b2, bias1, bias2_sqrt, opt[O_EPS], wd,
                           opt[O_DECOUPLED] != 0.0)


@jit
def _constrain(params, pinfo, c):
    for p in range(pinfo.shape[0]):
        if pinfo[p, P_MAXNORM] != 0:
            _max_norm(_view(params, pinfo[p, P_OFF], pinfo[p, P_ROWS], pinfo[p, P_COLS]), c)


@jit
def train_epoch(X, y_cls, y_reg, order, starts, lrs, seeds, ops, fops, slopes, params, grads,
                state1, state2, pinfo, tcount, opt, loss_code, acts, bufs, saved_bufs, stats,
                g0, g1, partial, bn_dw, bn_db, zeros, ce_weight, tb, row_loss,
                step_loss, step_correct, step_penalty, sw):
    """Every step of one epoch; returns the number of steps completed.

    ``sw``: per-sample weights (float64, indexed like X), or an empty array
    for an unweighted run (see :func:`_reweight`).

    Step s trains on rows ``order[starts[s]:starts[s + 1]]`` with learning
    rate ``lrs[s]`` and the dropout seeds ``seeds[s]``.  Its data loss,
    number of correct argmaxes (classification; for BCE the rows with every
    label right) and L1+L2 penalty go to
    ``step_loss[s]``, ``step_correct[s]``, ``step_penalty[s]``.  A
    non-finite loss stops the epoch before that step's update, with the
    batch-norm running statistics as they were before its forward (the
    return value is then the index of that step, its loss in step_loss).
    """
    n_steps = starts.size - 1
    n_out = ops[ops.shape[0] - 1, OP_OUT]
    d_in = X.shape[1]
    y_width = y_reg.shape[1]
    for s in range(n_steps):
        lo, hi = starts[s], starts[s + 1]
        nb = hi - lo
        # Regression targets wait in g1, which the backward pass needs only later.
        _gather(X, y_cls, y_reg, order, lo, hi, _view(acts, 0, nb, d_in), tb,
                _view(g1, 0, nb, y_width))
        saved_bufs[:] = bufs
        _forward(ops, fops, slopes, params, acts, bufs, stats, seeds, s, nb, zeros)
        out = _view(acts, ops[ops.shape[0] - 1, OP_Y], nb, n_out)
        value = _loss(loss_code, out, tb[:nb], _view(g1, 0, nb, y_width), ce_weight,
                      row_loss[:nb], _view(g0, 0, nb, n_out))
        if sw.size > 0 and math.isfinite(value):
            value = _reweight(loss_code, out, _view(g1, 0, nb, y_width), order, lo, sw,
                              row_loss[:nb], _view(g0, 0, nb, n_out))
        step_loss[s] = value
        if not math.isfinite(value):
            bufs[:] = saved_bufs
            return s
        if loss_code == CROSS_ENTROPY or loss_code == HINGE:
            step_correct[s] = _correct(out, tb[:nb])
        elif loss_code == BCE:
            step_correct[s] = _subset_correct(out, _view(g1, 0, nb, y_width))
        _backward(ops, fops, slopes, params, grads, acts, stats, seeds, s, nb, g0, g1,
                  partial, bn_dw, bn_db)
        step_penalty[s] = _penalties(params, grads, pinfo, opt[O_L2], opt[O_L1])
        _optimizer_step(params, grads, state1, state2, pinfo, tcount, opt, lrs[s])
        if opt[O_MAXNORM] > 0.0:
            _constrain(params, pinfo, opt[O_MAXNORM])
    return n_steps
