"""CUDA twins of :mod:`fastnn._cpu.regularization`: L2/L1 penalties, max-norm projection."""
import math

import numpy as np

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


@cuda.jit
def _penalty_partial(w, grad, lam, l1, partial):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    acc = 0.0
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        v = np.float64(w[i])
        if l1:
            acc += abs(v)
            grad[i] = lam * (1.0 if v > 0.0 else (-1.0 if v < 0.0 else v))
        else:
            acc += v * v
            grad[i] = v * (2.0 * lam)
    s = block_sum(acc, sh, cuda.threadIdx.x, cuda.blockDim.x)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = s


def _penalty(w, grad, lam, l1, total):
    tpb = threads_per_block()
    blocks = grid_for(w.size, tpb, cap=1024)
    partial = cuda.device_array(blocks, np.float64)
    launch(_penalty_partial, blocks, tpb, w, grad, lam, l1, partial)
    launch(sum_1d, 1, tpb, partial, total, 0)


def l2_penalty(w, grad, lam, total):
    """total[0] = sum(w**2) (float64), grad = 2 lam w, for flat w/grad."""
    _penalty(w, grad, lam, False, total)


def l1_penalty(w, grad, lam, total):
    """total[0] = sum(|w|) (float64), grad = lam sign(w)."""
    _penalty(w, grad, lam, True, total)


@cuda.jit
def _max_norm_rows(weight, c):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n, m = weight.shape
    for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, m, nt):
            v = np.float64(weight[r, j])
            acc += v * v
        acc = block_sum(acc, sh, tid, nt)
        big, root = 1.0, math.sqrt(acc)
        if acc < 1e-280 or acc == math.inf:
            # tiny or huge entries (their squares under- or overflowed), or
            # NaN/inf: factor the largest magnitude out first, as the CPU
            # kernel does (||w_r|| = big * root, compared as c / big < root)
            big = 0.0
            for j in range(tid, m, nt):
                big = max(big, abs(np.float64(weight[r, j])))
            big = block_max(big, sh, tid, nt)
            if big == 0.0:
                big = 1.0
            acc = 0.0
            for j in range(tid, m, nt):
                v = np.float64(weight[r, j]) / big
                acc += v * v
            root = math.sqrt(block_sum(acc, sh, tid, nt))
        if c / big < root:
            factor = c / root           # (w / big) * (c / root): c / big may underflow
            for j in range(tid, m, nt):
                weight[r, j] = (np.float64(weight[r, j]) / big) * factor


def max_norm(weight, c):
    """In place: rows with L2 norm > c are scaled to norm c; the others are not written."""
    if weight.shape[0] and weight.shape[1]:
        launch(_max_norm_rows, max(1, min(weight.shape[0], 65535 * 8)), threads_per_block(),
               weight, c)
