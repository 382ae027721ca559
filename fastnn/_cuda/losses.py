"""CUDA twins of :mod:`fastnn._cpu.losses`: hinge, MSE, MAE and binary cross-entropy with
logits, fused with their gradients.

Sums accumulate in float64: each block reduces its grid-stride share in
shared memory and writes one partial; :func:`fastnn._cuda._common.sum_1d`
merges the partials into a device scalar (no host synchronization).
"""
import numpy as np

from fastnn._cpu import losses as cpu_losses
from fastnn._cuda._common import (
    MAX_THREADS,
    block_sum,
    cuda,
    grid_for,
    launch,
    sum_1d,
    threads_per_block,
)


@cuda.jit(device=True)
def _sign(v):
    # sign(0) = 0 (the subgradient of |r| at 0), sign(NaN) = NaN
    return 1.0 if v > 0.0 else (-1.0 if v < 0.0 else v)


@cuda.jit
def _hinge_rows(scores, target, margin, gscale, row_loss, grad, with_grad):
    """One thread per row, as the CPU's per-row loop."""
    n, c = scores.shape
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y = target[i]
        sy = np.float64(scores[i, y])
        acc = 0.0
        count = 0.0
        for j in range(c):
            if j == y:
                continue
            m = np.float64(scores[i, j]) - sy + margin
            active = 1.0 if m > 0.0 else 0.0
            acc += m if not (m <= 0.0) else 0.0     # NaN propagates into the loss
            count += active
            if with_grad:
                grad[i, j] = gscale * active
        if with_grad:
            grad[i, y] = -gscale * count
            if acc != acc:
                # NaN in the row (a score, or s_y): its whole gradient is NaN, as on the CPU.
                for j in range(c):
                    grad[i, j] = np.nan
        row_loss[i] = acc


def hinge(scores, target, margin, gscale, row_loss, grad, with_grad):
    """row_loss[i] = sum_{j != y_i} max(0, s_ij - s_iy + margin); gradient as the CPU kernel."""
    n = scores.shape[0]
    tpb = threads_per_block()
    launch(_hinge_rows, grid_for(n, tpb), tpb, scores, target, margin, gscale, row_loss,
           grad, with_grad)


@cuda.jit
def _regression_partial(pred, target, grad, gscale, with_grad, l1, partial):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    acc = 0.0
    for i in range(cuda.grid(1), pred.size, cuda.gridsize(1)):
        r = np.float64(pred[i]) - np.float64(target[i])
        if l1:
            acc += abs(r)
            if with_grad:
                grad[i] = gscale * _sign(r)
        else:
            acc += r * r
            if with_grad:
                grad[i] = r * gscale
    s = block_sum(acc, sh, cuda.threadIdx.x, cuda.blockDim.x)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = s


def _regression_sum(pred, target, grad, gscale, with_grad, l1, total):
    tpb = threads_per_block()
    blocks = grid_for(pred.size, tpb, cap=1024)
    partial = cuda.device_array(blocks, np.float64)
    launch(_regression_partial, blocks, tpb, pred, target, grad, gscale, with_grad, l1, partial)
    launch(sum_1d, 1, tpb, partial, total, 0)


def mse_sum(pred, target, grad, gscale, with_grad, total):
    """total[0] = sum((pred - target)**2); with_grad: grad = gscale * (pred - target).

    Flat arrays.
    """
    _regression_sum(pred, target, grad, gscale, with_grad, False, total)


def l1_sum(pred, target, grad, gscale, with_grad, total):
    """total[0] = sum(|pred - target|); with_grad: grad = gscale * sign(pred - target)."""
    _regression_sum(pred, target, grad, gscale, with_grad, True, total)


@cuda.jit
def _regression_none(pred, target, loss, grad, with_grad, l1):
    for i in range(cuda.grid(1), pred.size, cuda.gridsize(1)):
        r = np.float64(pred[i]) - np.float64(target[i])
        if l1:
            loss[i] = abs(r)
            if with_grad:
                grad[i] = _sign(r)
        else:
            loss[i] = r * r
            if with_grad:
                grad[i] = 2.0 * r


def mse_none(pred, target, loss, grad, with_grad):
    """Elementwise loss = (pred - target)**2 and, with_grad, grad = 2 (pred - target)."""
    tpb = threads_per_block()
    launch(_regression_none, grid_for(pred.size, tpb), tpb, pred, target, loss, grad,
           with_grad, False)


def l1_none(pred, target, loss, grad, with_grad):
    """Elementwise loss = |pred - target| and, with_grad, grad = sign(pred - target)."""
    tpb = threads_per_block()
    launch(_regression_none, grid_for(pred.size, tpb), tpb, pred, target, loss, grad,
           with_grad, True)


# ---------------------------------------------------------------- BCE with logits

# The CPU's scalar term itself (its Python source), compiled as a device function.
_bce_term = cuda.jit(device=True)(cpu_losses.bce_term.py_func)


@cuda.jit
def first_outside_unit(a, out):
    """out[0] = min flat index i with a[i] outside [0, 1] (NaN included)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        v = a[i]
        if not (v >= 0.0 and v <= 1.0):
            cuda.atomic.min(out, 0, i)


@cuda.jit
def _bce_partial(pred, target, grad, gscale, with_grad, partial):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    acc = 0.0
    for i in range(cuda.grid(1), pred.size, cuda.gridsize(1)):
        v, d = _bce_term(np.float64(pred[i]), np.float64(target[i]))
        acc += v
        if with_grad:
            grad[i] = d * gscale
    s = block_sum(acc, sh, cuda.threadIdx.x, cuda.blockDim.x)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = s


def bce_sum(pred, target, grad, gscale, with_grad, total):
    """total[0] = sum of the BCE-with-logits terms; with_grad: grad = gscale (sigmoid - target).

    Flat arrays.
    """
    tpb = threads_per_block()
    blocks = grid_for(pred.size, tpb, cap=1024)
    partial = cuda.device_array(blocks, np.float64)
    launch(_bce_partial, blocks, tpb, pred, target, grad, gscale, with_grad, partial)
    launch(sum_1d, 1, tpb, partial, total, 0)


@cuda.jit
def _bce_none(pred, target, loss, grad, with_grad):
    for i in range(cuda.grid(1), pred.size, cuda.gridsize(1)):
        v, d = _bce_term(np.float64(pred[i]), np.float64(target[i]))
        loss[i] = v
        if with_grad:
            grad[i] = d


def bce_none(pred, target, loss, grad, with_grad):
    """Elementwise BCE-with-logits terms into ``loss``; with_grad, grad = sigmoid(pred) - target."""
    tpb = threads_per_block()
    launch(_bce_none, grid_for(pred.size, tpb), tpb, pred, target, loss, grad, with_grad)
