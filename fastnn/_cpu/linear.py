"""CPU kernels of a linear layer: its three matrix products, the fused epilogue
and the fused backward prologue.

The matrix products (:func:`matmul_xwt`, :func:`matmul_gw`,
:func:`matmul_gtx`) are ``np.dot`` calls compiled by numba, which sends them
to the BLAS (scipy's OpenBLAS) without a Python round trip.  They are the
ONE product routine of the package: the layer path's launcher
(:func:`fastnn._cpu.backend.linear`) and the compiled engine
(:mod:`fastnn._cpu.engine`) both call them, so the two executors multiply
with the same BLAS and get the same bits (numpy's own OpenBLAS, a different
build, summed some products in another order: 2e-10 relative apart after
a few float64 steps).  What is left for numba is the elementwise work around
them, done in ONE pass over the (N, out) output each way:

* forward:  ``bias_activation_(y, bias, act, slope)`` turns ``y = x @ W.T``
  into ``act(y + bias)`` in place;
* backward: ``activation_grad_bias_sum(dy, y, act, slope, dz, partial)``
  writes ``dz = dy * act'(y)`` and sums its columns (the bias gradient) in the
  same pass; ``column_sum(dy, partial)`` is the no-activation case, where
  ``dz`` is ``dy`` itself and only the sum is needed.

The activation is an integer code (one compiled kernel serves all five) and
the branch on it sits outside the inner loops, so each inner loop is a plain
vectorizable loop over one row.  The activations themselves and their
derivatives are the scalar functions of :mod:`fastnn._cpu.activations`,
which the standalone activation layers apply too.
"""
import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu.activations import (  # noqa: F401  (the codes, re-exported for the backends)
    LEAKY_RELU,
    NONE,
    RELU,
    SIGMOID,
    TANH,
    leaky_relu,
    leaky_relu_grad,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    tanh,
    tanh_grad,
)

# ------------------------------------------------------------------ products
# Plain compiled loops were measured against the BLAS (float32, one BLAS
# thread, the three products of a layer's step, medians of 7): the BLAS won at
# every size of the lesson's nets, from 32x16x2 (0.4 us vs 0.6) through
# 32x30x16 (1.4 vs 7.5) and 64x64x128 (32 vs 310) to 32x256x256 (329 vs 810);
# so there is no switch.  Operands are C- or Fortran-ordered (a transpose
# flag for the BLAS); ``out`` is C-contiguous.

@jit
def matmul_xwt(x, w, y):
    """``y = x @ w.T`` for x (n, k), w (m, k), y (n, m): a linear layer's forward product."""
    np.dot(x, w.T, y)


@jit
def matmul_gw(g, w, dx):
    """``dx = g @ w`` for g (n, m), w (m, k), dx (n, k): the input gradient."""
    np.dot(g, w, dx)


@jit
def matmul_gtx(g, x, dw):
    """``dw = g.T @ x`` for g (n, m), x (n, k), dw (m, k): the weight gradient."""
    np.dot(g.T, x, dw)


# ------------------------------------------------------------------ elementwise
# The exp-based activations get a function of their own: inside the kernel
# below, beside every other loop, LLVM stopped inlining the float64 exp and
# the loop stopped vectorizing (tanh at 4096 x 1024: 30 ms instead of ~6).

@jit
def _bias_tanh_(row, bias):
    for j in range(row.size):
        row[j] = tanh(row[j] + bias[j])


@jit
def _bias_sigmoid_(row, bias):
    for j in range(row.size):
        row[j] = sigmoid(row[j] + bias[j])


@dual_jit
def bias_activation_(y, bias, act, slope):
    """In place: ``y[i, j] = act(y[i, j] + bias[j])``.

    ``bias`` has ``y.shape[1]`` elements (zeros when the layer has none),
    ``slope`` is the leaky-ReLU slope, of ``y``'s dtype.
    """
    n, m = y.shape
    for i in prange(n):
        row = y[i]
        if act == NONE:
            for j in range(m):
                row[j] += bias[j]
        elif act == RELU:
            for j in range(m):
                row[j] = relu(row[j] + bias[j])
        elif act == LEAKY_RELU:
            for j in range(m):
                row[j] = leaky_relu(row[j] + bias[j], slope)
        elif act == TANH:
            _bias_tanh_(row, bias)
        else:
            _bias_sigmoid_(row, bias)


@dual_jit
def activation_grad_bias_sum(dy, y, act, slope, dz, partial):
    """``dz = dy * act'(y)`` and ``partial[c] = sum of dz over chunk c's rows``.

    The activation derivative is taken from the saved OUTPUT ``y``:
    relu' = (y > 0), leaky' = 1 if y > 0 else slope, tanh' = 1 - y**2,
    sigmoid' = y (1 - y); ``act`` is never NONE (see :func:`column_sum`).
    Rows are split into ``partial.shape[0]`` chunks, each summed in float64
    into its own row of ``partial`` (the caller merges them), so threads
    never share an accumulator.
    """
    n, m = dy.shape
    n_chunks = partial.shape[0]
    for c in prange(n_chunks):
        acc = partial[c]
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            g = dy[i]
            o = y[i]
            d = dz[i]
            if act == RELU:
                for j in range(m):
                    v = relu_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v
            elif act == LEAKY_RELU:
                for j in range(m):
                    v = leaky_relu_grad(g[j], o[j], slope)
                    d[j] = v
                    acc[j] += v
            elif act == TANH:
                for j in range(m):
                    v = tanh_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v
            else:
                for j in range(m):
                    v = sigmoid_grad(g[j], o[j])
                    d[j] = v
                    acc[j] += v


@dual_jit
def column_sum(a, partial):
    """``partial[c] = float64 sum of a's rows in chunk c`` (merged by the caller)."""
    n, m = a.shape
    n_chunks = partial.shape[0]
    for c in prange(n_chunks):
        acc = partial[c]
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            row = a[i]
            for j in range(m):
                acc[j] += row[j]
