"""CUDA twins of :mod:`fastnn._cpu.batchnorm` (same names, same arguments minus n_chunks).

Layout: x is (N, C) row-major.  A block is (TX columns) x (TY row lanes):
neighbouring threads read neighbouring columns (coalesced).  The grid's y
axis splits the rows into chunks.  Each thread runs Welford's update in
float64 over its rows; the TY lanes of a column are merged with Chan's
formula in shared memory; each block writes one (count, mean, M2) triple per
column, and a last small kernel merges the chunks, again with Chan's
formula.  Every pass accumulates in float64 (never E[x^2] - E[x]^2).

Byte model (float32): train forward 12 B/element (x read twice, y written),
eval forward 8 B, train backward 20 B, eval backward 12 B.
"""
import math

import numpy as np

from fastnn._cuda._common import MAX_THREADS, cuda, grid_for, launch, threads_per_block


def _block_shape(c):
    """(TX, TY): up to 32 columns per block, the rest of the block as row lanes."""
    tpb = threads_per_block()
    tx = min(32, max(1, tpb // 8), max(1, c))
    return tx, max(1, tpb // tx)


def tile_grid(n, c):
    tx, ty = _block_shape(c)
    gx = (c + tx - 1) // tx
    # enough blocks to fill a large GPU; each lane still gets a few rows
    gy = max(1, min(max(1, 2048 // gx), (n + 4 * ty - 1) // (4 * ty)))
    return (gx, gy), (tx, ty)


@cuda.jit(device=True)
def tile(n):
    """This thread's place in a (column block) x (row chunk) grid of :func:`tile_grid`.

    (Public names: the layer-norm twins sum their weight gradients over the
    same tiles.)

    Returns (tx, ty, bx, by, j, g, lo, hi): thread and block sizes, column
    ``j``, row chunk ``g`` and its rows ``lo:hi``; lane ``ty`` takes rows
    lo + ty, lo + ty + by, ...
    """
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    bx = cuda.blockDim.x
    by = cuda.blockDim.y
    g = cuda.blockIdx.y
    gy = cuda.gridDim.y
    return tx, ty, bx, by, cuda.blockIdx.x * bx + tx, g, g * n // gy, (g + 1) * n // gy


@cuda.jit(device=True)
def half_span(by):
    """The first stride of a tree reduction over ``by`` lanes: the largest
    power of two below ``by`` (lanes ty + s >= by have no partner)."""
    s = 1
    while s < by:
        s *= 2
    return s // 2


@cuda.jit(device=True)
def _welford(cnt, mu, m2, v):
    cnt += 1.0
    d = v - mu
    mu += d / cnt
    return cnt, mu, m2 + d * (v - mu)


@cuda.jit
def _partial_stats(x, part_n, part_mean, part_m2):
    """Per (row chunk, column): Welford over the chunk's rows, lanes merged by Chan."""
    sn = cuda.shared.array(MAX_THREADS, np.float64)
    sm = cuda.shared.array(MAX_THREADS, np.float64)
    sq = cuda.shared.array(MAX_THREADS, np.float64)
    n, c = x.shape
    tx, ty, bx, by, j, g, lo, hi = tile(n)
    cnt = 0.0
    mu = 0.0
    m2 = 0.0
    if j < c:
        # Four rows' loads are issued before their updates: a lone load per
        # iteration waits behind the previous Welford step, and one load in
        # flight per thread held the first H200 run's statistics pass far
        # below the memory bandwidth.
        i = lo + ty
        while i + 3 * by < hi:
            v0 = np.float64(x[i, j])
            v1 = np.float64(x[i + by, j])
            v2 = np.float64(x[i + 2 * by, j])
            v3 = np.float64(x[i + 3 * by, j])
            cnt, mu, m2 = _welford(cnt, mu, m2, v0)
            cnt, mu, m2 = _welford(cnt, mu, m2, v1)
            cnt, mu, m2 = _welford(cnt, mu, m2, v2)
            cnt, mu, m2 = _welford(cnt, mu, m2, v3)
            i += 4 * by
        while i < hi:
            cnt, mu, m2 = _welford(cnt, mu, m2, np.float64(x[i, j]))
            i += by
    slot = ty * bx + tx
    sn[slot] = cnt
    sm[slot] = mu
    sq[slot] = m2
    cuda.syncthreads()
    s = half_span(by)
    while s > 0:
        if ty < s and ty + s < by:
            o = (ty + s) * bx + tx
            na = sn[slot]
            nb = sn[o]
            tot = na + nb
            if nb > 0.0:
                d = sm[o] - sm[slot]
                sm[slot] += d * (nb / tot)
                sq[slot] += sq[o] + d * d * (na * nb / tot)
                sn[slot] = tot
        cuda.syncthreads()
        s //= 2
    if ty == 0 and j < c:
        part_n[g, j] = sn[tx]
        part_mean[g, j] = sm[tx]
        part_m2[g, j] = sq[tx]


@cuda.jit
def _finalize_stats(part_n, part_mean, part_m2, n, eps, running_mean, running_var,
                    update_running, momentum, mean, invstd):
    """One thread per column: Chan's merge of the chunks, then invstd and running stats."""
    j = cuda.grid(1)
    if j >= mean.size:
        return
    na = 0.0
    ma = 0.0
    qa = 0.0
    for k in range(part_n.shape[0]):
        nb = part_n[k, j]
        if nb > 0.0:
            tot = na + nb
            d = part_mean[k, j] - ma
            ma += d * (nb / tot)
            qa += part_m2[k, j] + d * d * (na * nb / tot)
            na = tot
    if n == 0:
        ma = math.nan
        qa = math.nan
    qa = max(qa, 0.0) if qa == qa else qa
    mean[j] = ma
    invstd[j] = 1.0 / math.sqrt(qa / n + eps) if n > 0 else math.nan
    if update_running:
        running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * ma
        running_var[j] = (1.0 - momentum) * running_var[j] + momentum * (qa / (n - 1))


@cuda.jit
def _normalize(x, mean, invstd, weight, bias, has_weight, has_bias, y):
    """y = (x - mean) * invstd * weight + bias, in float64 per element.

    2-D grid (see :func:`_grid_2d`): a thread keeps one column, so its
    coefficients live in registers and no element index is divided by C (a
    64-bit division per element held the first H200 run's eval forward at
    58% of copy bandwidth).
    """
    n, c = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= c:
        return
    s = invstd[j] * weight[j] if has_weight else invstd[j]
    t = np.float64(bias[j]) if has_bias else 0.0
    m = mean[j]
    for i in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, n,
                   cuda.gridDim.y * cuda.blockDim.y):
        y[i, j] = (np.float64(x[i, j]) - m) * s + t


@cuda.jit
def _eval_stats(running_mean, running_var, eps, mean, invstd):
    j = cuda.grid(1)
    if j < mean.size:
        mean[j] = running_mean[j]
        invstd[j] = 1.0 / math.sqrt(np.float64(running_var[j]) + eps)


def _grid_2d(n, c):
    """(grid, block) for the per-element kernels: up to 32 columns per block along
    x (coalesced), the rest of the block and a grid-stride loop over rows along y."""
    tpb = threads_per_block()
    tx = min(32, tpb, c)
    ty = max(1, tpb // tx)
    gx = (c + tx - 1) // tx
    gy = max(1, min((n + ty - 1) // ty, max(1, 65535 // 4), max(1, 16384 // gx)))
    return (gx, gy), (tx, ty)


def _elementwise_grid(n_items):
    tpb = threads_per_block()
    return grid_for(n_items, tpb), tpb


def batch_norm_train_forward(x, weight, bias, has_weight, has_bias, eps,
                             running_mean, running_var, update_running, momentum,
                             y, mean, invstd):
    """As the CPU kernel: batch statistics, running-stat update, normalization."""
    n, c = x.shape
    if c == 0:
        return
    grid, block = tile_grid(n, c)
    gy = grid[1]
    part_n = cuda.device_array((gy, c), np.float64)
    part_mean = cuda.device_array((gy, c), np.float64)
    part_m2 = cuda.device_array((gy, c), np.float64)
    launch(_partial_stats, grid, block, x, part_n, part_mean, part_m2)
    g1, b1 = _elementwise_grid(c)
    launch(_finalize_stats, g1, b1, part_n, part_mean, part_m2, n, eps, running_mean,
           running_var, update_running, momentum, mean, invstd)
    if n:
        g2, b2 = _grid_2d(n, c)
        launch(_normalize, g2, b2, x, mean, invstd, weight, bias, has_weight, has_bias, y)


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, has_weight, has_bias,
                            eps, y, mean, invstd):
    """As the CPU kernel: normalize with the running statistics, one pass over x."""
    n, c = x.shape
    if c == 0:
        return
    g1, b1 = _elementwise_grid(c)
    launch(_eval_stats, g1, b1, running_mean, running_var, eps, mean, invstd)
    if n:
        g2, b2 = _grid_2d(n, c)
        launch(_normalize, g2, b2, x, mean, invstd, weight, bias, has_weight, has_bias, y)


@cuda.jit
def _partial_grad_sums(dy, x, mean, invstd, weight, has_weight, write_dx, dx,
                       part_s1, part_s2):
    """Per (row chunk, column): sum(dy) and sum(dy (x - mean)) in float64.

    With ``write_dx`` (eval mode) also dx = dy * weight * invstd in the same pass.
    """
    s1s = cuda.shared.array(MAX_THREADS, np.float64)
    s2s = cuda.shared.array(MAX_THREADS, np.float64)
    n, c = x.shape
    tx, ty, bx, by, j, g, lo, hi = tile(n)
    s1 = 0.0
    s2 = 0.0
    if j < c:
        a = invstd[j] * weight[j] if has_weight else invstd[j]
        mj = mean[j]
        for i in range(lo + ty, hi, by):
            d = np.float64(dy[i, j])
            s1 += d
            s2 += d * (np.float64(x[i, j]) - mj)
            if write_dx:
                dx[i, j] = d * a
    slot = ty * bx + tx
    s1s[slot] = s1
    s2s[slot] = s2
    cuda.syncthreads()
    s = half_span(by)
    while s > 0:
        if ty < s and ty + s < by:
            o = (ty + s) * bx + tx
            s1s[slot] += s1s[o]
            s2s[slot] += s2s[o]
        cuda.syncthreads()
        s //= 2
    if ty == 0 and j < c:
        part_s1[g, j] = s1s[tx]
        part_s2[g, j] = s2s[tx]


@cuda.jit
def _finalize_grads(part_s1, part_s2, n, invstd, weight, has_weight, dweight, dbias,
                    k_dy, k_x, k0):
    """dbias, dweight and the per-column coefficients of the train-mode dx."""
    j = cuda.grid(1)
    if j >= dbias.size:
        return
    t1 = 0.0
    t2 = 0.0
    for k in range(part_s1.shape[0]):
        t1 += part_s1[k, j]
        t2 += part_s2[k, j]
    dbias[j] = t1
    dweight[j] = t2 * invstd[j]
    a = invstd[j] * weight[j] if has_weight else invstd[j]
    aq = a * t2 * invstd[j] * invstd[j] / n if n > 0 else 0.0
    k_dy[j] = a
    k_x[j] = -aq
    k0[j] = -(a * t1 / n) if n > 0 else 0.0


@cuda.jit
def _train_dx(dy, x, mean, k_dy, k_x, k0, dx):
    """dx = a dy - a q (x - mean) - a sum(dy) / N, in float64 per element."""
    n, c = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= c:
        return
    a, q, m, b = k_dy[j], k_x[j], mean[j], k0[j]
    for i in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, n,
                   cuda.gridDim.y * cuda.blockDim.y):
        dx[i, j] = np.float64(dy[i, j]) * a + (np.float64(x[i, j]) - m) * q + b


def _grad_sums(dy, x, mean, invstd, weight, has_weight, write_dx, dx):
    n, c = x.shape
    grid, block = tile_grid(n, c)
    gy = grid[1]
    part_s1 = cuda.device_array((gy, c), np.float64)
    part_s2 = cuda.device_array((gy, c), np.float64)
    launch(_partial_grad_sums, grid, block, dy, x, mean, invstd, weight, has_weight,
           write_dx, dx, part_s1, part_s2)
    return part_s1, part_s2


def batch_norm_train_backward(dy, x, mean, invstd, weight, has_weight, dx, dweight, dbias):
    """As the CPU kernel: gradients through the batch statistics (two passes over x, dy)."""
    n, c = x.shape
    if c == 0:
        return
    part_s1, part_s2 = _grad_sums(dy, x, mean, invstd, weight, has_weight, False, dx)
    k_dy = cuda.device_array(c, np.float64)
    k_x = cuda.device_array(c, np.float64)
    k0 = cuda.device_array(c, np.float64)
    g1, b1 = _elementwise_grid(c)
    launch(_finalize_grads, g1, b1, part_s1, part_s2, n, invstd, weight, has_weight,
           dweight, dbias, k_dy, k_x, k0)
    if n:
        g2, b2 = _grid_2d(n, c)
        launch(_train_dx, g2, b2, dy, x, mean, k_dy, k_x, k0, dx)


def batch_norm_eval_backward(dy, x, mean, invstd, weight, has_weight, dx, dweight, dbias):
    """As the CPU kernel: fixed statistics, dx and the two sums in one pass."""
    n, c = x.shape
    if c == 0:
        return
    part_s1, part_s2 = _grad_sums(dy, x, mean, invstd, weight, has_weight, True, dx)
    k_dy = cuda.device_array(c, np.float64)
    k_x = cuda.device_array(c, np.float64)
    k0 = cuda.device_array(c, np.float64)
    g1, b1 = _elementwise_grid(c)
    launch(_finalize_grads, g1, b1, part_s1, part_s2, n, invstd, weight, has_weight,
           dweight, dbias, k_dy, k_x, k0)
