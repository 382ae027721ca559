"""CUDA twins of :mod:`fastnn._cpu.softmax`: a team (a warp or a block) per row.

(Softmax along an axis other than the last, which the CPU side handles by
moving the axis, has its own kernel here: one thread per column.)

Each team owns a row (grid-stride over rows): a team max, then a team sum of
``exp(x - max)`` in float64, then the output written (see "row teams").  For the fused
cross-entropy the gradient is written in the same kernel, optionally over the
logits themselves (``grad`` may be ``x``: every element is read before it is
written, and the row's reads all happen before its writes).
"""
import math

import numpy as np

from fastnn._cuda import simulator_enabled
from fastnn._cuda._common import (
    MAX_THREADS,
    block_max,
    block_sum,
    cuda,
    grid_for,
    launch,
    sum_1d,
    threads_per_block,
)

_MAX_ROW_BLOCKS = 65535 * 8
_FULL_MASK = 0xFFFFFFFF


# ------------------------------------------------------------------ row teams
#
# A row is owned by a *team*: a whole block (its reductions go through shared
# memory and barriers), or one warp of 32 lanes (``warp=True``: reductions by
# register shuffles, no barrier at all; several rows per block at once).  The
# kernels below are written once over the team; the launcher chooses.  The
# warp path is what the GPU runs for rows of up to WARP_ROW_MAX elements; the
# CUDA simulator has no shuffles, so under it (and for blocks that are not
# whole warps) the block path runs.

@cuda.jit(device=True)
def _team(warp):
    """(first row, row step, this thread's lane, lanes per team)."""
    if warp:
        per_block = cuda.blockDim.x // 32
        return (cuda.blockIdx.x * per_block + cuda.threadIdx.x // 32,
                cuda.gridDim.x * per_block, cuda.threadIdx.x % 32, 32)
    return cuda.blockIdx.x, cuda.gridDim.x, cuda.threadIdx.x, cuda.blockDim.x


@cuda.jit(device=True)
def _team_max(v, warp, sh, lane, lanes):
    """Max over the team; NaN wins (as block_max)."""
    if not warp:
        return block_max(v, sh, lane, lanes)
    off = 16
    while off > 0:
        o = cuda.shfl_xor_sync(_FULL_MASK, v, off)
        if o > v or o != o:
            v = o
        off //= 2
    return v


@cuda.jit(device=True)
def _team_sum(v, warp, sh, lane, lanes):
    if not warp:
        return block_sum(v, sh, lane, lanes)
    off = 16
    while off > 0:
        v += cuda.shfl_xor_sync(_FULL_MASK, v, off)
        off //= 2
    return v


@cuda.jit(device=True)
def _team_sync(warp):
    if warp:
        cuda.syncwarp(_FULL_MASK)
    else:
        cuda.syncthreads()



@cuda.jit
def _softmax_rows(x, out, log, warp):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    n, c = x.shape
    first, step, tid, nt = _team(warp)
    for i in range(first, n, step):
        m = -math.inf
        for j in range(tid, c, nt):
            v = np.float64(x[i, j])
            if v > m or v != v:
                m = v
        m = _team_max(m, warp, sh, tid, nt)
        s = 0.0
        for j in range(tid, c, nt):
            s += math.exp(np.float64(x[i, j]) - m)
        s = _team_sum(s, warp, sh, tid, nt)
        if log:
            log_s = math.log(s)
            for j in range(tid, c, nt):
                out[i, j] = (np.float64(x[i, j]) - m) - log_s
        else:
            inv = 1.0 / s
            for j in range(tid, c, nt):
                out[i, j] = math.exp(np.float64(x[i, j]) - m) * inv


@cuda.jit
def _softmax_axis(x, out, log):
    """Softmax along the middle axis of (A, C, B) arrays: one thread per (a, b).

    For an axis other than the last: no transposition, and neighbouring
    threads read neighbouring b, so every load of the C loop is coalesced.
    Same arithmetic (and NaN/inf rules) as the row kernel.
    """
    n_a, c, n_b = x.shape
    for k in range(cuda.grid(1), n_a * n_b, cuda.gridsize(1)):
        a = k // n_b
        b = k - a * n_b
        m = -math.inf
        for j in range(c):
            v = np.float64(x[a, j, b])
            if v > m or v != v:
                m = v
        s = 0.0
        for j in range(c):
            s += math.exp(np.float64(x[a, j, b]) - m)
        if log:
            log_s = math.log(s)
            for j in range(c):
                out[a, j, b] = (np.float64(x[a, j, b]) - m) - log_s
        else:
            inv = 1.0 / s
            for j in range(c):
                out[a, j, b] = math.exp(np.float64(x[a, j, b]) - m) * inv


def softmax_axis(x, out, log):
    """out = (log_)softmax of (A, C, B) ``x`` along its middle axis."""
    tpb = threads_per_block()
    launch(_softmax_axis, grid_for(x.shape[0] * x.shape[2], tpb), tpb, x, out, log)


# Row elements per thread that set the block of a block team (see
# _row_threads).  Measured on the H200 (softmax-CE fwd+bwd, 100000 x 1000
# float32, block teams): 8 elements per thread 2.16 ms, 32: 1.68 ms.
ROW_ELEMENTS_PER_THREAD = 32


def _row_threads(c):
    """Threads of the block that owns a row of ``c`` elements.

    The smallest power of two from 32 (a warp) that gives each thread at
    most :data:`ROW_ELEMENTS_PER_THREAD` elements, capped by
    ``threads_per_block()``.  A full 256-thread block per 1000-wide row spent
    its time in block reductions (8 barrier levels each, ~22 barriers a row):
    the first H200 run measured softmax-CE at 11% of copy bandwidth.
    """
    tpb = threads_per_block()
    t = 32
    while t < tpb and t * ROW_ELEMENTS_PER_THREAD < c:
        t *= 2
    return min(t, tpb)


# Rows up to this wide go to warp teams; wider rows keep a block each.
# Measured on the H200 (float32, fwd+bwd of softmax-CE, warp vs block teams):
# 100000 x 1000: 1.61 vs 2.61 ms; 25000 x 4000: 1.50 vs 1.23 ms.
WARP_ROW_MAX = 1024


def _row_launch(kernel, n, c, *args):
    """Launch a row kernel over ``n`` rows of ``c``: warp teams or block teams."""
    tpb = threads_per_block()
    if c <= WARP_ROW_MAX and tpb % 32 == 0 and not simulator_enabled():
        per_block = tpb // 32
        launch(kernel, max(1, min((n + per_block - 1) // per_block, _MAX_ROW_BLOCKS)), tpb,
               *args, True)
    else:
        launch(kernel, max(1, min(n, _MAX_ROW_BLOCKS)), _row_threads(c), *args, False)


def softmax_rows(x, out):
    """out[i] = softmax(x[i]) for every row."""
    _row_launch(_softmax_rows, x.shape[0], x.shape[1], x, out, False)


def log_softmax_rows(x, out):
    """out[i] = log_softmax(x[i])."""
    _row_launch(_softmax_rows, x.shape[0], x.shape[1], x, out, True)


@cuda.jit
def _target_weight_sum(target, weight, ignore_index, out):
    """out[0] = sum of weight[t_i] over the rows not ignored (one block)."""
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    acc = 0.0
    for i in range(tid, target.size, nt):
        t = target[i]
        if t != ignore_index:
            acc += weight[t]
    total = block_sum(acc, sh, tid, nt)
    if tid == 0:
        out[0] = total


@cuda.jit
def _cross_entropy_rows(x, target, weight, ignore_index, smoothing, mean, w_targets,
                        losses, grad, with_grad, warp):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    n, c = x.shape
    first, step, tid, nt = _team(warp)
    # Each weight is divided by the "mean" denominator before it multiplies
    # anything, as on the CPU: 1 / w_targets is inf for a subnormal sum.
    denom = w_targets[0] if mean else 1.0
    keep = 1.0 - smoothing
    spread = smoothing / c
    for i in range(first, n, step):
        t = target[i]
        if t == ignore_index:
            if tid == 0:
                losses[i] = 0.0
            if with_grad:
                for j in range(tid, c, nt):
                    grad[i, j] = 0.0
            continue
        m = -math.inf
        for j in range(tid, c, nt):
            v = np.float64(x[i, j])
            if v > m or v != v:
                m = v
        m = _team_max(m, warp, sh, tid, nt)
        s = 0.0
        sd = 0.0                   # sum_j w_j (x_j - m), for the smoothing term
        w_all = 0.0
        for j in range(tid, c, nt):
            d = np.float64(x[i, j]) - m
            s += math.exp(d)
            if smoothing > 0.0:
                sd += weight[j] * d
                w_all += weight[j]
        s = _team_sum(s, warp, sh, tid, nt)
        if smoothing > 0.0:
            sd = _team_sum(sd, warp, sh, tid, nt)
            w_all = _team_sum(w_all, warp, sh, tid, nt)
        d_t = np.float64(x[i, t]) - m
        # every thread has read x[i, t] and the whole row (the team sums
        # synchronized) before any gradient is written over the logits
        _team_sync(warp)
        log_s = math.log(s)
        w_t = np.float64(weight[t])
        if tid == 0:
            loss = keep * w_t * (log_s - d_t)
            if smoothing > 0.0:
                loss += spread * (w_all * log_s - sd)
            losses[i] = loss
        if with_grad:
            a = (keep * (w_t / denom) + spread * (w_all / denom)) / s
            for j in range(tid, c, nt):
                g = math.exp(np.float64(x[i, j]) - m) * a
                if smoothing > 0.0:
                    g -= spread * (weight[j] / denom)
                if j == t:
                    g -= keep * (w_t / denom)
                grad[i, j] = g
        _team_sync(warp)           # the next row's reductions reuse sh


def cross_entropy_rows(x, target, weight, ignore_index, smoothing, mean, losses, grad,
                       with_grad, total):
    """As the CPU kernel, but the reduced loss goes to the device scalar ``total[0]``.

    ``losses`` (N,) float64 receives the per-row losses; with ``with_grad``,
    ``grad`` (may be ``x``) the gradient of the reduced loss.  ``total`` is a
    float64 device array of 2 elements: total[0] the reduced loss, total[1]
    the target-weight sum (the "mean" denominator).  No host synchronization.
    """
    n = x.shape[0]
    tpb = threads_per_block()
    launch(_target_weight_sum, 1, tpb, target, weight, ignore_index, total[1:])
    if n:
        _row_launch(_cross_entropy_rows, n, x.shape[1], x, target, weight, ignore_index,
                    smoothing, mean, total[1:], losses, grad, with_grad)
    launch(_reduce_total, 1, tpb, losses, mean, total)


@cuda.jit
def _reduce_total(losses, mean, total):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    acc = 0.0
    for i in range(tid, losses.size, nt):
        acc += losses[i]
    s = block_sum(acc, sh, tid, nt)
    if tid == 0:
        total[0] = s / total[1] if mean else s


__all__ = ["softmax_rows", "log_softmax_rows", "cross_entropy_rows", "sum_1d"]
