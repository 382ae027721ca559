"""Device side of :mod:`fastnn.nn`: moving arrays, activation layers, gradient sums.

:mod:`fastnn.nn` imports this module only when a model is moved to the GPU or
a layer meets a device array.  Linear, batch norm and dropout need nothing
here: they call :mod:`fastnn.functional`, which sends device arrays to
:mod:`fastnn._cuda.backend`.  The standalone activation layers launch the
kernels of :mod:`fastnn._cuda.activations`.
"""

from fastnn._cuda import require_cuda

cuda = require_cuda()

from fastnn._cuda._common import grid_for, launch, threads_per_block  # noqa: E402
from fastnn._cuda.activations import activation_backward, activation_forward, add_  # noqa: E402
from fastnn._cuda.backend import float_array  # noqa: E402
from fastnn._validation import activation_code, check_shape  # noqa: E402


def _elementwise(kernel, n, *args):
    if n:
        tpb = threads_per_block()
        launch(kernel, grid_for(n, tpb), tpb, *args)


def _flat(a):
    return a.reshape(a.size) if a.ndim != 1 else a


# ------------------------------------------------------------------ layers

def activation(x, name, negative_slope):
    """``name``'s activation of device ``x``, as a new device array (x's dtype)."""
    x = float_array(x, "x")
    act, slope = activation_code(name, negative_slope)
    y = cuda.device_array(x.shape, dtype=x.dtype)
    _elementwise(activation_forward, x.size, _flat(x), _flat(y), act, x.dtype.type(slope))
    return y


def activation_grad(dy, y, name, negative_slope):
    """dx of ``name``'s activation from the forward output ``y`` (device arrays)."""
    y = float_array(y, "y")
    dy = float_array(dy, "dy", dtype=y.dtype)
    check_shape(dy, tuple(y.shape), "dy")
    act, slope = activation_code(name, negative_slope)
    dx = cuda.device_array(y.shape, dtype=y.dtype)
    _elementwise(activation_backward, y.size, _flat(dy), _flat(y), act, y.dtype.type(slope),
                 _flat(dx))
    return dx


def accumulate_(grad, g):
    """In place: grad += g (device arrays of one shape)."""
    g = float_array(g, "g", dtype=grad.dtype)
    check_shape(g, tuple(grad.shape), "g")
    _elementwise(add_, grad.size, _flat(grad), _flat(g))
    return grad
