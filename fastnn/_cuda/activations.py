"""Elementwise kernels of the standalone layers: activations and gradient sums.

The activations reuse the fused linear kernel's own device functions
(``_activate`` / ``_act_grad`` of :mod:`fastnn._cuda.linear`), so a ReLU
layer and a Linear with ``activation="relu"`` compute the same thing on the
GPU (NaN passes through; ReLU's derivative is 0 at 0).  Flat C-contiguous
arrays, one grid-stride thread per element.  The launchers are in
:mod:`fastnn._cuda.nn`.
"""
from fastnn._cuda._common import cuda
from fastnn._cuda.linear import _act_grad, _activate


@cuda.jit
def activation_forward(x, y, act, slope):
    """y = act(x), elementwise (the Linear epilogue's activation, without the bias)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = _activate(x[i], act, slope)


@cuda.jit
def activation_backward(dy, y, act, slope, dx):
    """dx = dy * act'(x), from the forward output y (as the fused backward)."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = _act_grad(dy[i], y[i], act, slope)


@cuda.jit
def add_(a, b):
    """In place: a += b (gradient accumulation)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] += b[i]
