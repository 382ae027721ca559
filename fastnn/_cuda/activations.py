"""CUDA activations: the one device definition of each, and the layers' elementwise kernels.

:func:`activate` and :func:`activate_grad` are the device functions of every
activation and its derivative (from the forward output); the fused linear
kernels of :mod:`fastnn._cuda.linear` call them in their epilogue and
backward prologue, and :func:`activation_forward` / :func:`activation_backward`
below apply them alone for the standalone layers, so a ReLU layer and a
Linear with ``activation="relu"`` compute the same thing on the GPU (NaN
passes through; ReLU's derivative is 0 at 0).  The twins of
:mod:`fastnn._cpu.activations`, with its integer codes.  Flat C-contiguous
arrays, one grid-stride thread per element; the launchers are in
:mod:`fastnn._cuda.backend`.
"""
import math

from fastnn._cpu.activations import LEAKY_RELU, RELU, SIGMOID, TANH
from fastnn._cuda._common import cuda

__all__ = ["activate", "activate_grad", "activation_forward", "activation_backward", "add_"]


@cuda.jit(device=True)
def activate(v, act, slope):
    """act(v) for the activation code ``act`` (NONE: v itself)."""
    if act == RELU:
        return 0 if v < 0 else v            # NaN passes through, as on the CPU
    if act == LEAKY_RELU:
        return v if v > 0 else v * slope
    if act == TANH:
        return math.tanh(v)
    if act == SIGMOID:
        e = math.exp(-abs(v))
        return 1 / (1 + e) if v >= 0 else e / (1 + e)
    return v


@cuda.jit(device=True)
def activate_grad(g, o, act, slope):
    """g * act'(x), read off the forward output ``o`` (``act`` is not NONE)."""
    if act == RELU:
        return 0 if o <= 0 else g           # torch's threshold_backward: NaN y lets g through
    if act == LEAKY_RELU:
        return g if o > 0 else g * slope
    if act == TANH:
        return g * (1 - o * o)
    return g * (o * (1 - o))


@cuda.jit
def activation_forward(x, y, act, slope):
    """y = act(x), elementwise (the Linear epilogue's activation, without the bias)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = activate(x[i], act, slope)


@cuda.jit
def activation_backward(dy, y, act, slope, dx):
    """dx = dy * act'(x), from the forward output y (as the fused backward)."""
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = activate_grad(dy[i], y[i], act, slope)


@cuda.jit
def add_(a, b):
    """In place: a += b (gradient accumulation)."""
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] += b[i]
