"""Launch helpers and block reductions shared by the CUDA twins.

Importing this module imports numba.cuda (or raises a clear RuntimeError via
:func:`fastnn._cuda.require_cuda`); only the lazily imported CUDA modules do.
"""
import warnings

import numpy as np

from fastnn import _config
from fastnn._cuda import import_cuda, simulator_enabled

# Importing needs numba-cuda, not a driver: kernels compile on first launch,
# and fastnn._cuda.backend checks for a usable device before that.
cuda = import_cuda()

# Shared-memory buffers are sized for the largest block CUDA allows; kernels
# use blockDim at run time, so a smaller CUDA_THREADS_PER_BLOCK (tests shrink
# it to force multi-block launches and tails) needs no recompilation.
MAX_THREADS = 1024
# Enough blocks to fill every SM of a large GPU several times over; grid-stride
# loops cover the rest.
MAX_BLOCKS = 8192


def threads_per_block():
    """fastnn._config.CUDA_THREADS_PER_BLOCK, read at call time, checked."""
    t = int(_config.CUDA_THREADS_PER_BLOCK)
    if not 1 <= t <= MAX_THREADS:
        raise ValueError(f"fastnn._config.CUDA_THREADS_PER_BLOCK must be in [1, {MAX_THREADS}], "
                         f"got {t}")
    return t


def grid_for(n, tpb, cap=MAX_BLOCKS):
    """Blocks for ``n`` work items of one thread each (at least 1, at most ``cap``)."""
    return max(1, min(cap, (n + tpb - 1) // tpb))


def launch(kernel, grid, block, *args):
    """``kernel[grid, block](*args)``.

    The simulator runs kernels as Python on numpy scalars, where the uint64
    hash's wrap-around multiplies and inf/NaN arithmetic raise RuntimeWarnings
    that compiled code never does; they are silenced for simulated launches
    only.
    """
    if simulator_enabled():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kernel[grid, block](*args)
    else:
        kernel[grid, block](*args)


# ------------------------------------------------------------------ block reductions
#
# Every thread of the block calls these with its own value; all receive the
# result.  Tree reductions over blockDim threads that need not be a power of
# two: at each step the upper half is folded onto the lower half.

@cuda.jit(device=True)
def _pow2_half(nt):
    s = 1
    while s < nt:
        s *= 2
    return s // 2


@cuda.jit(device=True)
def block_sum(value, sh, tid, nt):
    """Sum of ``value`` over the nt threads of a 1-D block (float64 ``sh`` scratch)."""
    sh[tid] = value
    cuda.syncthreads()
    s = _pow2_half(nt)
    while s > 0:
        if tid < s and tid + s < nt:
            sh[tid] += sh[tid + s]
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    cuda.syncthreads()          # sh may be reused right after
    return total


@cuda.jit(device=True)
def block_max(value, sh, tid, nt):
    """Max of ``value`` over the block; NaN wins (as np.max), so NaN rows stay NaN."""
    sh[tid] = value
    cuda.syncthreads()
    s = _pow2_half(nt)
    while s > 0:
        if tid < s and tid + s < nt:
            a = sh[tid]
            b = sh[tid + s]
            if b > a or b != b:
                sh[tid] = b
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    cuda.syncthreads()
    return total


@cuda.jit
def sum_1d(a, out, index):
    """out[index] = float64 sum of a (one block; used to merge per-block partials)."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sh = cuda.shared.array(MAX_THREADS, np.float64)
    acc = 0.0
    for i in range(tid, a.size, nt):
        acc += a[i]
    total = block_sum(acc, sh, tid, nt)
    if tid == 0:
        out[index] = total


@cuda.jit
def copy_2d(src, dst):
    """dst = src for 2-D arrays of any strides (makes a C-contiguous copy)."""
    n, m = src.shape
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, n * m, stride):
        i = k // m
        j = k - i * m
        dst[i, j] = src[i, j]


@cuda.jit
def copy_1d(src, dst):
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit
def fill(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@cuda.jit
def first_bad_label(target, n_classes, ignore_index, use_ignore, out):
    """out[0] = min index i with target[i] outside [0, n_classes) and not ignored."""
    for i in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        t = target[i]
        if (t < 0 or t >= n_classes) and not (use_ignore and t == ignore_index):
            cuda.atomic.min(out, 0, i)
