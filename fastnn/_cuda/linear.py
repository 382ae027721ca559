"""CUDA twins of :mod:`fastnn._cpu.linear`: the fused epilogue and backward prologue.

The matrix products go to cuBLAS through CuPy when CuPy imports (as the CPU
side goes to the BLAS), else to :func:`matmul`, a shared-memory tiled numba
kernel.  Around them, one elementwise pass each way:

* forward:  ``bias_activation_(y, bias, act, slope)``: y = act(y + bias) in place;
* backward: ``activation_grad_bias_sum(dy, y, act, slope, dz, partial)`` writes
  dz = dy * act'(y) and per-row-chunk float64 column sums of dz (the bias
  gradient) in one pass; ``column_sum(a, partial)`` is the no-activation case.
  ``partial`` has one row per chunk; merge it with ``column_sum(partial, out)``.

The activations are the device functions of :mod:`fastnn._cuda.activations`.
"""
import numpy as np

from fastnn._cuda._common import cuda, grid_for, launch, threads_per_block
from fastnn._cuda.activations import activate, activate_grad

# Square tile edge of the fallback matmul; the block is (t, t) with t chosen at
# launch (<= TILE), so tests can shrink it to force edge tiles.
TILE = 16


@cuda.jit
def bias_activation_(y, bias, act, slope):
    """In place: ``y[i, j] = act(y[i, j] + bias[j])`` (bias zeros for a layer without one)."""
    n, m = y.shape
    for k in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = k // m
        j = k - i * m
        y[i, j] = activate(y[i, j] + bias[j], act, slope)


@cuda.jit
def activation_grad_bias_sum(dy, y, act, slope, dz, partial):
    """``dz = dy * act'(y)``; ``partial[c, j]`` = float64 sum of dz[:, j] over chunk c's rows.

    Grid: x over columns (coalesced), y over ``partial.shape[0]`` row chunks.
    """
    n, m = dy.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    n_chunks = partial.shape[0]
    if j >= m:
        return
    acc = 0.0
    for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
        v = activate_grad(dy[i, j], y[i, j], act, slope)
        dz[i, j] = v
        acc += v
    partial[c, j] = acc


@cuda.jit
def column_sum(a, partial):
    """``partial[c, j]`` = float64 sum of a[:, j] over chunk c's rows (grid as above)."""
    n, m = a.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    n_chunks = partial.shape[0]
    if j >= m:
        return
    acc = 0.0
    for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
        acc += a[i, j]
    partial[c, j] = acc


def column_grid(n, m):
    """(grid, block, n_chunks) for the column-sum kernels of an (n, m) array."""
    tpb = threads_per_block()
    gx = grid_for(m, tpb, cap=1 << 30)
    # enough (column block, row chunk) pairs to fill the GPU, a few rows each
    n_chunks = max(1, min(n, 1024 // gx, max(1, n // 4)))
    return (gx, n_chunks), tpb, n_chunks


@cuda.jit
def matmul(a, b, c):
    """c = a @ b for 2-D arrays of any strides (pass ``w.T`` views); float64 tiles.

    Each (t, t) block computes a t x t tile of c, staging t x t tiles of a and
    b through shared memory; edge tiles are padded with zeros.
    """
    sa = cuda.shared.array((TILE, TILE), np.float64)
    sb = cuda.shared.array((TILE, TILE), np.float64)
    t = cuda.blockDim.x
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * t + ty
    col = cuda.blockIdx.x * t + tx
    n, k = a.shape
    m = b.shape[1]
    acc = 0.0
    for k0 in range(0, k, t):
        sa[ty, tx] = a[row, k0 + tx] if row < n and k0 + tx < k else 0.0
        sb[ty, tx] = b[k0 + ty, col] if k0 + ty < k and col < m else 0.0
        cuda.syncthreads()
        for q in range(t):
            acc += sa[ty, q] * sb[q, tx]
        cuda.syncthreads()
    if row < n and col < m:
        c[row, col] = acc


def _cupy():
    try:
        import cupy
    except Exception:  # not installed, or installed without a usable CUDA runtime
        return None
    return cupy


def gemm(a, b, out):
    """out = a @ b: cuBLAS via CuPy when importable, else :func:`matmul`."""
    n, m = out.shape
    if n == 0 or m == 0:
        return out
    cp = _cupy()
    if cp is not None and a.shape[1] > 0:
        cp.matmul(cp.asarray(a), cp.asarray(b), out=cp.asarray(out))
        return out
    t = 1
    while (2 * t) * (2 * t) <= threads_per_block() and 2 * t <= TILE:
        t *= 2
    launch(matmul, ((m + t - 1) // t, (n + t - 1) // t), (t, t), a, b, out)
    return out
