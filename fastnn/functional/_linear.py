"""Public linear functions: validation, output allocation, one backend call."""
from fastnn._backend import backend_of
from fastnn._validation import activation_code, check_shape

__all__ = ["linear", "linear_backward"]


def _operands(be, x, weight):
    x = be.float_array(x, "x", ndim=2, contiguous=False)
    weight = be.float_array(weight, "weight", ndim=2, dtype=x.dtype, contiguous=False)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape (out, {x.shape[1]}) to match x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    return x, weight


def linear(x, weight, bias=None, activation=None, negative_slope=0.01):
    """Fused linear layer: ``act(x @ weight.T + bias)``.

    Parameters
    ----------
    x : ndarray, shape (N, in), float32 or float64
        The batch, one sample per row.  Any memory layout.
    weight : ndarray, shape (out, in)
        The weights in torch's layout: row ``k`` is neuron ``k``'s incoming
        weight vector.  Same dtype as ``x``.
    bias : ndarray, shape (out,), optional
        Added to every row.  Same dtype as ``x``.
    activation : {None, "relu", "leaky_relu", "tanh", "sigmoid"}
        Applied elementwise after the bias.
    negative_slope : float, default 0.01
        Slope of ``"leaky_relu"`` for negative inputs; must be >= 0 (the
        backward pass recovers the input's sign from the output).

    Returns
    -------
    y : ndarray, shape (N, out), dtype of ``x``
        A new array; no argument is modified.

    Raises
    ------
    TypeError
        Non-float, float16 or mixed float32/float64 operands; a non-real
        ``negative_slope``.
    ValueError
        Wrong dimensions or shapes, an unknown ``activation``, a negative,
        infinite or NaN ``negative_slope``.

    Notes
    -----
    ``y = act(z)``, ``z = x W^T + b``.  The product goes to the BLAS, writing
    straight into the freshly allocated ``y``; then one fused pass over ``y``
    adds the bias and applies the activation in place.  ``tanh`` uses libm's
    ``tanh``; ``sigmoid`` the stable form ``1 / (1 + e)`` for ``z >= 0`` and
    ``e / (1 + e)`` otherwise, with ``e = exp(-|z|)``, so ``|z| = 1e4`` gives
    exactly 0 or 1 and no overflow.  NaN propagates through every activation.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.functional as F
    >>> x = np.array([[1.0, -2.0]])
    >>> w = np.array([[1.0, 1.0], [0.5, -1.0]])
    >>> F.linear(x, w, bias=np.array([0.0, 1.0]), activation="relu")
    array([[0. , 3.5]])
    """
    be = backend_of(x, weight, bias)
    x, weight = _operands(be, x, weight)
    n_out = weight.shape[0]
    if bias is not None:
        bias = be.float_array(bias, "bias", ndim=1, dtype=x.dtype)
        check_shape(bias, (n_out,), "bias")
    act, slope = activation_code(activation, negative_slope)
    y = be.empty((x.shape[0], n_out), x.dtype)
    be.linear(x, weight, bias, act, slope, y)
    return y


def linear_backward(dy, x, weight, y, activation=None, negative_slope=0.01):
    """Gradients of the fused linear layer, from the saved output.

    Parameters
    ----------
    dy : ndarray, shape (N, out)
        Gradient of the loss with respect to the layer's output ``y``.
    x : ndarray, shape (N, in)
        The forward input.
    weight : ndarray, shape (out, in)
        The forward weights.
    y : ndarray, shape (N, out), or None
        The forward OUTPUT ``linear(x, weight, bias, activation)``; the
        activation's derivative is read off it.  Unused (may be None) when
        ``activation`` is None.
    activation : {None, "relu", "leaky_relu", "tanh", "sigmoid"}
        The forward activation.
    negative_slope : float, default 0.01
        The forward leaky-ReLU slope (>= 0).

    Returns
    -------
    dx : ndarray, shape (N, in)
    dweight : ndarray, shape (out, in)
    dbias : ndarray, shape (out,)
        Always returned (zeros for an empty batch); ignore it for a layer
        without bias.  All three have the dtype of ``x``.

    Raises
    ------
    TypeError
        Non-float, float16 or mixed float32/float64 operands; a non-real
        ``negative_slope``.
    ValueError
        Wrong dimensions or shapes, ``y`` missing with an activation, an
        unknown ``activation``, a negative, infinite or NaN ``negative_slope``.

    Notes
    -----
    ``dz = dy * act'(z)`` with the derivative expressed through the output:
    relu' = 1 if y > 0 else 0 (so relu'(0) = 0), leaky_relu' = 1 if y > 0 else
    slope, tanh' = 1 - y^2, sigmoid' = y (1 - y).  Then
    ``dbias = sum_i dz[i]``, ``dx = dz W`` and ``dweight = dz^T x``.  One fused
    pass writes ``dz`` and accumulates ``dbias`` in float64; the two products
    go to the BLAS.  Where
    ``y`` is NaN, relu passes the gradient through, as torch does.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnn.functional as F
    >>> x = np.array([[1.0, -2.0]])
    >>> w = np.array([[1.0, 1.0], [0.5, -1.0]])
    >>> y = F.linear(x, w, activation="relu")
    >>> dx, dw, db = F.linear_backward(np.ones_like(y), x, w, y, activation="relu")
    >>> db
    array([0., 1.])
    >>> dx
    array([[ 0.5, -1. ]])
    """
    be = backend_of(dy, x, weight, y)
    x, weight = _operands(be, x, weight)
    dtype = x.dtype
    n, n_out = x.shape[0], weight.shape[0]
    dy = be.float_array(dy, "dy", ndim=2, dtype=dtype, contiguous=False)
    check_shape(dy, (n, n_out), "dy")
    act, slope = activation_code(activation, negative_slope)
    if y is not None or activation is not None:
        if y is None:
            raise ValueError(f"y (the forward output) is needed for activation {activation!r}")
        y = be.float_array(y, "y", ndim=2, dtype=dtype, contiguous=False)
        check_shape(y, (n, n_out), "y")
    dx = be.empty((n, x.shape[1]), dtype)
    dweight = be.empty((n_out, x.shape[1]), dtype)
    dbias = be.linear_backward(dy, x, weight, y, act, slope, dx, dweight)
    return dx, dweight, dbias
