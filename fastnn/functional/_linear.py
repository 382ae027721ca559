"""Public linear functions (validation + dispatch to fastnn._cpu.linear)."""
import math

import numpy as np

from fastnn import memory
from fastnn._cpu import linear as _k
from fastnn._validation import check_choice, check_shape, float_array, real_scalar

__all__ = ["linear", "linear_backward"]

# The fused passes run the SERIAL twin at every size, by measurement: they
# always follow a BLAS call, and OpenBLAS's worker thread keeps spinning for up
# to ~0.1 s after returning, so a numba parallel region has to fight it for
# the second core.  Epilogue of a 4096 x 1024 float32 output right after
# sgemm (2-core machine under load, medians of 3 interleaved runs): serial 1.1 ms, parallel
# 35 ms (7.4 ms with OMP_WAIT_POLICY=PASSIVE, best case 1.0 ms); at 256 x 1024:
# serial 0.10 ms, parallel 33 ms (0.16 ms passive).  Serial costs ~2% of the
# products at these sizes.  The parallel twins stay tested, so switching to
# ``.pick(n)`` is a one-word change if the BLAS ever stops spinning.

_ACTIVATIONS = {None: _k.NONE, "relu": _k.RELU, "leaky_relu": _k.LEAKY_RELU,
                "tanh": _k.TANH, "sigmoid": _k.SIGMOID}


def _activation(activation, negative_slope):
    """(activation code, slope as float) after validating both."""
    check_choice(activation, "activation", tuple(_ACTIVATIONS))
    # The backward pass reads the derivative off the output y, and y > 0
    # identifies the input's sign only when the slope is not negative.
    slope = real_scalar(negative_slope, "negative_slope", low=0.0, high=math.inf,
                        high_open=True)
    return _ACTIVATIONS[activation], slope


def _blas_operand(a):
    """``a`` itself when the BLAS can read it in place (C or Fortran order), else a C copy.

    numpy's matmul hands either order to the BLAS as a transpose flag, but
    falls back to a naive loop for other strides.
    """
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)


def _operands(x, weight):
    x = _blas_operand(float_array(x, "x", ndim=2, contiguous=False))
    weight = _blas_operand(float_array(weight, "weight", ndim=2, dtype=x.dtype,
                                       contiguous=False))
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape (out, {x.shape[1]}) to match x of shape "
                         f"{x.shape}, got {weight.shape}")
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
    x, weight = _operands(x, weight)
    n_out = weight.shape[0]
    if bias is not None:
        bias = float_array(bias, "bias", ndim=1, dtype=x.dtype)
        check_shape(bias, (n_out,), "bias")
    act, slope = _activation(activation, negative_slope)

    y = memory.empty((x.shape[0], n_out), x.dtype)
    np.matmul(x, weight.T, out=y)
    if bias is None and act == _k.NONE:
        return y
    if bias is None:
        bias = np.zeros(n_out, dtype=x.dtype)
    _k.bias_activation_.serial(y, bias, act, x.dtype.type(slope))
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
    x, weight = _operands(x, weight)
    dtype = x.dtype
    n, n_out = x.shape[0], weight.shape[0]
    dy = float_array(dy, "dy", ndim=2, dtype=dtype)
    check_shape(dy, (n, n_out), "dy")
    act, slope = _activation(activation, negative_slope)
    if y is not None or act != _k.NONE:
        if y is None:
            raise ValueError(f"y (the forward output) is needed for activation {activation!r}")
        y = float_array(y, "y", ndim=2, dtype=dtype, contiguous=act != _k.NONE)
        check_shape(y, (n, n_out), "y")

    # The kernels sum dz in float64, one row of partial sums per chunk of rows;
    # the serial twin has a single chunk, so its row is the sum.
    partial = np.zeros((1, n_out))
    if act == _k.NONE:
        dz = dy
        _k.column_sum.serial(dy, partial)
    else:
        dz = memory.empty(dy.shape, dtype)
        _k.activation_grad_bias_sum.serial(dy, y, act, dtype.type(slope), dz, partial)
    dbias = partial[0].astype(dtype)

    dx = memory.empty((n, x.shape[1]), dtype)
    np.matmul(dz, weight, out=dx)
    dweight = memory.empty((n_out, x.shape[1]), dtype)
    np.matmul(dz.T, x, out=dweight)
    return dx, dweight, dbias
