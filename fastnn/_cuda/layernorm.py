"""CUDA twins of :mod:`fastnn._cpu.layernorm` (same names, same arguments minus n_chunks).

Layout: x is (M, D) row-major and C-contiguous (fastnn.functional flattens
it).  A block owns a row (grid-stride over rows): block sums in float64 of
x, then of the deviations and their squares from the first mean (the CPU
kernel's corrected two-pass algorithm, so both devices agree to rounding
and neither loses a large offset), then the row is written.  The backward
pass is one row kernel for dx (two block sums per row) and, for the column
sums dweight and dbias, the (column block) x (row chunk) tiles of the batch
norm twins merged by a last small kernel.

Byte model (float32): forward 8 B/element (read x, write y; the statistics
passes re-read it, from cache for rows that fit), backward 12 B plus a
second read of x and dy for the column sums.
"""
import math

import numpy as np

from fastnn._cuda._common import MAX_THREADS, block_sum, cuda, launch, threads_per_block
from fastnn._cuda.batchnorm import half_span, tile, tile_grid

# Row blocks per launch at most; the grid-stride loops cover the rest.
_MAX_ROW_BLOCKS = 65535


def _row_launch(n, d):
    """(grid, block): a block of up to CUDA_THREADS_PER_BLOCK lanes per row."""
    return max(1, min(n, _MAX_ROW_BLOCKS)), max(1, min(threads_per_block(), d))


@cuda.jit
def _forward_rows(x, weight, bias, has_weight, has_bias, eps, y, mean, invstd):
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    n, d = x.shape
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        s = 0.0
        for j in range(tid, d, nt):
            s += np.float64(x[i, j])
        m = block_sum(s, sh, tid, nt) / d
        c = 0.0
        q = 0.0
        for j in range(tid, d, nt):
            t = np.float64(x[i, j]) - m
            c += t
            q += t * t
        c = block_sum(c, sh, tid, nt)
        q = block_sum(q, sh, tid, nt)
        m2 = q - c * c / d
        if m2 < 0.0:
            m2 = 0.0
        mu = m + c / d
        r = 1.0 / math.sqrt(m2 / d + eps)
        if tid == 0:
            mean[i] = mu
            invstd[i] = r
        for j in range(tid, d, nt):
            v = (np.float64(x[i, j]) - mu) * r
            if has_weight:
                v = v * weight[j]
            if has_bias:
                v = v + bias[j]
            y[i, j] = v


@cuda.jit
def _dx_rows(dy, x, mean, invstd, weight, has_weight, dx):
    """dx = invstd * (g - mean(g) - xhat * mean(g xhat)) per row, g = dy * weight."""
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    n, d = x.shape
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        mu = mean[i]
        r = invstd[i]
        a = 0.0
        b = 0.0
        for j in range(tid, d, nt):
            g = np.float64(dy[i, j])
            if has_weight:
                g = g * weight[j]
            a += g
            b += g * ((np.float64(x[i, j]) - mu) * r)
        a = block_sum(a, sh, tid, nt) / d
        b = block_sum(b, sh, tid, nt) / d
        for j in range(tid, d, nt):
            g = np.float64(dy[i, j])
            if has_weight:
                g = g * weight[j]
            dx[i, j] = r * (g - a - (np.float64(x[i, j]) - mu) * r * b)


@cuda.jit
def _param_partials(dy, x, mean, invstd, part_w, part_b):
    """Per (row chunk, column): sum(dy xhat) and sum(dy) in float64, lanes merged in a tree."""
    sw = cuda.shared.array(MAX_THREADS, np.float64)
    sb = cuda.shared.array(MAX_THREADS, np.float64)
    n, d = x.shape
    tx, ty, bx, by, j, g, lo, hi = tile(n)
    acc_w = 0.0
    acc_b = 0.0
    if j < d:
        for i in range(lo + ty, hi, by):
            v = np.float64(dy[i, j])
            acc_b += v
            acc_w += v * ((np.float64(x[i, j]) - mean[i]) * invstd[i])
    slot = ty * bx + tx
    sw[slot] = acc_w
    sb[slot] = acc_b
    cuda.syncthreads()
    s = half_span(by)
    while s > 0:
        if ty < s and ty + s < by:
            sw[slot] += sw[slot + s * bx]
            sb[slot] += sb[slot + s * bx]
        cuda.syncthreads()
        s //= 2
    if ty == 0 and j < d:
        part_w[g, j] = sw[tx]
        part_b[g, j] = sb[tx]


@cuda.jit
def _param_finalize(part_w, part_b, dweight, dbias):
    """One thread per column: the chunks' partial sums in chunk order."""
    j = cuda.grid(1)
    if j >= dweight.size:
        return
    tw = 0.0
    tb = 0.0
    for k in range(part_w.shape[0]):
        tw += part_w[k, j]
        tb += part_b[k, j]
    dweight[j] = tw
    dbias[j] = tb


def layer_norm_forward(x, weight, bias, has_weight, has_bias, eps, y, mean, invstd):
    """As the CPU kernel: per-row float64 statistics, then the normalized rows."""
    n, d = x.shape
    if n == 0:
        return
    grid, block = _row_launch(n, d)
    launch(_forward_rows, grid, block, x, weight, bias, has_weight, has_bias, eps, y, mean,
           invstd)


def layer_norm_backward(dy, x, mean, invstd, weight, has_weight, dx, dweight, dbias):
    """As the CPU kernel: dx per row, dweight and dbias summed over the rows."""
    n, d = x.shape
    if n:
        grid, block = _row_launch(n, d)
        launch(_dx_rows, grid, block, dy, x, mean, invstd, weight, has_weight, dx)
    grid, block = tile_grid(n, d)
    part_w = cuda.device_array((grid[1], d), np.float64)
    part_b = cuda.device_array((grid[1], d), np.float64)
    launch(_param_partials, grid, block, dy, x, mean, invstd, part_w, part_b)
    tpb = threads_per_block()
    launch(_param_finalize, max(1, (d + tpb - 1) // tpb), tpb, part_w, part_b, dweight, dbias)
