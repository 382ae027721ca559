"""CPU activations: the one definition of each, for the fused linear layer and the layers.

Each activation and its derivative is written once, as an inlined scalar
function of this module; :mod:`fastnn._cpu.linear` applies them in the fused
epilogue / backward prologue of a linear layer, and :func:`activation_forward`
/ :func:`activation_backward` below apply them alone, for the standalone
layers of :mod:`fastnn.nn` (``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``).
So a ``ReLU`` layer and ``Linear(activation="relu")`` compute the same
numbers.  The CUDA twins are in :mod:`fastnn._cuda.activations`.

Semantics, shared with the CUDA twins and torch: NaN passes through every
activation; derivatives are read off the forward OUTPUT ``y`` (relu' is 0 at
0 and where y <= 0, so a NaN output lets the gradient through, as torch's
``threshold_backward``); leaky ReLU needs a slope >= 0 for that (y > 0
exactly when x > 0); tanh and sigmoid saturate to exactly +-1 / 0, 1 and
never overflow.

The activation is an integer code (:data:`NONE` ... :data:`SIGMOID`, shared
with :func:`fastnn._validation.activation_code` and the CUDA kernels), and
every kernel branches on it outside its inner loop, so that each inner loop
is a plain loop that vectorizes.
"""
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu._math import exp, tanh

# Activation codes, shared with fastnn._validation.activation_code and the CUDA kernels.
NONE, RELU, LEAKY_RELU, TANH, SIGMOID = 0, 1, 2, 3, 4

__all__ = ["NONE", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "relu", "leaky_relu", "sigmoid",
           "tanh", "relu_grad", "leaky_relu_grad", "tanh_grad", "sigmoid_grad",
           "activation_forward", "activation_backward"]


# ------------------------------------------------------------------ scalar definitions

@jit(inline="always")
def relu(v):
    """max(v, 0), with NaN passing through ("v < 0", not "v > 0 ? v : 0")."""
    return 0 if v < 0 else v


@jit(inline="always")
def leaky_relu(v, slope):
    """v for v > 0, slope * v otherwise (NaN passes through)."""
    return v if v > 0 else v * slope


@jit(inline="always")
def sigmoid(v):
    """The logistic 1 / (1 + exp(-v)), stably: e = exp(-|v|) is in (0, 1], never overflows."""
    e = exp(-abs(v))
    return 1 / (1 + e) if v >= 0 else e / (1 + e)


@jit(inline="always")
def relu_grad(g, o):
    """dy -> dx through ReLU from its output ``o``: 0 where o <= 0 (also at 0), else g."""
    return 0 if o <= 0 else g


@jit(inline="always")
def leaky_relu_grad(g, o, slope):
    """dy -> dx through leaky ReLU: o > 0 exactly when the input was > 0 (slope >= 0)."""
    return g if o > 0 else g * slope


@jit(inline="always")
def tanh_grad(g, o):
    """dy -> dx through tanh from its output: g (1 - o**2)."""
    return g * (1 - o * o)


@jit(inline="always")
def sigmoid_grad(g, o):
    """dy -> dx through the logistic from its output: g o (1 - o)."""
    return g * (o * (1 - o))


# ------------------------------------------------------------------ elementwise kernels
# Flat C-contiguous 1-D views, cut into n_chunks contiguous ranges (one per
# prange iteration; 1 in the serial twin).

# One small function per loop: in one function holding every loop, LLVM
# stopped inlining the float64 exp into the tanh loop (and so stopped
# vectorizing it: 37 ms instead of 10 at 4096 x 1024).

@jit
def _relu_range(x, y):
    for i in range(x.size):
        y[i] = relu(x[i])


@jit
def _leaky_relu_range(x, y, slope):
    for i in range(x.size):
        y[i] = leaky_relu(x[i], slope)


@jit
def _tanh_range(x, y):
    for i in range(x.size):
        y[i] = tanh(x[i])


@jit
def _sigmoid_range(x, y):
    for i in range(x.size):
        y[i] = sigmoid(x[i])


@jit
def _forward_range(x, y, act, slope):
    if act == RELU:
        _relu_range(x, y)
    elif act == LEAKY_RELU:
        _leaky_relu_range(x, y, slope)
    elif act == TANH:
        _tanh_range(x, y)
    elif act == SIGMOID:
        _sigmoid_range(x, y)
    else:
        y[:] = x


@jit
def _backward_range(dy, y, act, slope, dx):
    n = dy.size
    if act == RELU:
        for i in range(n):
            dx[i] = relu_grad(dy[i], y[i])
    elif act == LEAKY_RELU:
        for i in range(n):
            dx[i] = leaky_relu_grad(dy[i], y[i], slope)
    elif act == TANH:
        for i in range(n):
            dx[i] = tanh_grad(dy[i], y[i])
    elif act == SIGMOID:
        for i in range(n):
            dx[i] = sigmoid_grad(dy[i], y[i])
    else:
        dx[:] = dy


@dual_jit
def activation_forward(x, y, act, slope, n_chunks):
    """y = act(x) elementwise over flat C-contiguous ``x``, ``y`` (``slope`` of x's dtype)."""
    n = x.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _forward_range(x[lo:hi], y[lo:hi], act, slope)


@dual_jit
def activation_backward(dy, y, act, slope, dx, n_chunks):
    """dx = dy * act'(x), read off the forward output ``y``; flat C-contiguous arrays."""
    n = dy.size
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        _backward_range(dy[lo:hi], y[lo:hi], act, slope, dx[lo:hi])
