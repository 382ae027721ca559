"""Public layer-norm functions: validation, output allocation, one backend call."""
import math

import numpy as np

from fastnn._backend import backend_of
from fastnn._validation import check_shape, normalized_shape as _normalized_shape, real_scalar

__all__ = ["layer_norm", "layer_norm_backward"]


# ------------------------------------------------------------ argument rules

def _input(be, a, name, ns, dtype):
    """``a`` as a C-contiguous float array whose trailing dims are ``ns``.

    C-contiguous, so the kernels' (rows, D) view is a reshape, never a copy
    of the result; a non-contiguous or read-only input is copied (or read),
    never written.
    """
    a = be.float_array(a, name, dtype=dtype, contiguous=True)
    k = len(ns)
    if a.ndim < k or tuple(a.shape[a.ndim - k:]) != ns:
        raise ValueError(f"{name} of shape {tuple(a.shape)} does not end in normalized_shape "
                         f"{ns} (layer norm normalizes over the trailing dimensions)")
    return a


def _per_feature(be, a, name, ns, dtype):
    """An optional weight/bias of shape ``ns`` and x's dtype (read only)."""
    if a is None:
        return None
    a = be.float_array(a, name, dtype=dtype, contiguous=True)
    check_shape(a, ns, name)
    return a


def _statistic(be, a, name, lead, dtype):
    """``mean``/``invstd`` for the backward: float64 or x's dtype, shape ``lead``."""
    a = be.float_array(a, name, contiguous=True)
    if a.dtype != np.float64 and a.dtype != dtype:
        allowed = "float64" + ("" if dtype == np.float64 else f" or {dtype}")
        raise TypeError(f"{name} must be {allowed}, got {a.dtype}")
    check_shape(a, lead, name)
    return a


def _rows(shape, ns):
    """(leading shape, M rows, D features)."""
    lead = tuple(shape[:len(shape) - len(ns)])
    return lead, math.prod(lead), math.prod(ns)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, out=None):
    """Layer normalization of ``x`` over its trailing ``normalized_shape`` dimensions.

    Parameters
    ----------
    x : ndarray, shape (\\*, \\*normalized_shape), float32 or float64
        Any leading dimensions (none, for a single sample).  Any layout: a
        non-contiguous or read-only ``x`` is read through a contiguous copy.
    normalized_shape : int or tuple of int
        The trailing dimensions to normalize over (torch's convention): an
        int ``D`` means the last dimension, of size D.
    weight, bias : ndarray, shape normalized_shape, x's dtype, optional
        The elementwise affine scale gamma (default 1) and shift beta
        (default 0).
    eps : float > 0
        Added to the variance inside the square root.
    out : ndarray, x's shape and dtype, optional
        Writeable C-contiguous buffer for y, sharing no memory with the
        inputs.  Without it, a large y comes from the buffer cache of
        :mod:`fastnn.memory`.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : ndarray, shape x.shape[:-len(normalized_shape)], float64
        Each row's mean and 1 / sqrt(var + eps): what
        :func:`layer_norm_backward` needs.  float64 even for float32 x
        (torch returns x's dtype): rounding a mean of 1e4 to float32 moves
        it by 6e-4, an error of that size in every normalized value.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes (weight and bias must have x's dtype), a
        non-integer ``normalized_shape`` entry, a non-real ``eps``.
    ValueError
        ``normalized_shape`` empty or with a zero, x's trailing dimensions
        not equal to it, a weight/bias of another shape, eps <= 0 or NaN, an
        ``out`` of the wrong shape, not writeable C-contiguous, or
        overlapping an input.  Nothing is modified when an error is raised.

    Notes
    -----
    Over the D = prod(normalized_shape) trailing elements of each row:
    mu = mean(x), var = mean((x - mu)^2) (biased),
    y = (x - mu) / sqrt(var + eps) * weight + bias.
    The statistics are float64 two-pass sums per row with a correction
    term (never E[x^2] - E[x]^2), so a row 1e8 + N(0, 1) still normalizes
    to unit variance.  A row holding NaN or inf gives a NaN row (as torch);
    the other rows are unaffected.  Rows are independent, so an empty batch
    gives an empty y.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> x = np.array([[1.0, 3.0], [10.0, 30.0]])
    >>> y, mean, invstd = F.layer_norm(x, 2, eps=1e-12)
    >>> y
    array([[-1.,  1.],
           [-1.,  1.]])
    >>> mean
    array([ 2., 20.])
    """
    be = backend_of(x, weight, bias, out)
    ns = _normalized_shape(normalized_shape)
    x = _input(be, x, "x", ns, None)
    weight = _per_feature(be, weight, "weight", ns, x.dtype)
    bias = _per_feature(be, bias, "bias", ns, x.dtype)
    eps = real_scalar(eps, "eps", low=0.0, low_open=True)
    lead, m, d = _rows(x.shape, ns)
    y = be.output_array(out, tuple(x.shape), x.dtype, inplace_ok=False,
                        inputs=(("x", x), ("weight", weight), ("bias", bias)))
    mean = be.empty(lead, np.float64)
    invstd = be.empty(lead, np.float64)
    be.layer_norm(x.reshape(m, d), None if weight is None else weight.reshape(d),
                  None if bias is None else bias.reshape(d), eps, y.reshape(m, d),
                  mean.reshape(m), invstd.reshape(m))
    return y, mean, invstd


def layer_norm_backward(dy, x, normalized_shape, mean, invstd, weight=None, out=None):
    """Gradients of :func:`layer_norm` with respect to x, weight and bias.

    Parameters
    ----------
    dy : ndarray, x's shape and dtype
        Gradient of the loss with respect to y.
    x : ndarray, shape (\\*, \\*normalized_shape), float32 or float64
        The forward input.
    normalized_shape : int or tuple of int
        As given to the forward call.
    mean, invstd : ndarray, shape x.shape[:-len(normalized_shape)]
        As returned by :func:`layer_norm`: float64 (full accuracy) or x's dtype.
    weight : ndarray, shape normalized_shape, x's dtype, optional
        The forward scale gamma (default 1).  The bias does not enter the
        gradients.
    out : ndarray, x's shape and dtype, optional
        Buffer for dx, as ``out`` of :func:`layer_norm`.

    Returns
    -------
    dx : ndarray, x's shape and dtype
    dweight, dbias : ndarray, shape normalized_shape, x's dtype
        Gradients with respect to gamma and beta, summed over the rows.
        Returned even when ``weight`` is None: they are then the gradients
        with respect to the implicit gamma = 1 and beta = 0.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes (mean and invstd float64 or x's dtype).
    ValueError
        Shape mismatches (each names the argument), an unusable ``out``.

    Notes
    -----
    Per row, with xhat = (x - mean) * invstd and g = dy * weight, means over
    the D normalized elements:
    dx = invstd * (g - mean(g) - xhat * mean(g * xhat));
    over the rows: dweight = sum(dy * xhat), dbias = sum(dy).

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> x = np.array([[1.0, 3.0]])
    >>> y, mean, invstd = F.layer_norm(x, 2)
    >>> dx, dw, db = F.layer_norm_backward(np.array([[1.0, 1.0]]), x, 2, mean, invstd)
    >>> dx, db
    (array([[0., 0.]]), array([1., 1.]))
    """
    be = backend_of(dy, x, mean, invstd, weight, out)
    ns = _normalized_shape(normalized_shape)
    x = _input(be, x, "x", ns, None)
    dy = be.float_array(dy, "dy", dtype=x.dtype, contiguous=True)
    check_shape(dy, x.shape, "dy")
    lead, m, d = _rows(x.shape, ns)
    mean = _statistic(be, mean, "mean", lead, x.dtype)
    invstd = _statistic(be, invstd, "invstd", lead, x.dtype)
    weight = _per_feature(be, weight, "weight", ns, x.dtype)
    dx = be.output_array(out, tuple(x.shape), x.dtype, inplace_ok=False,
                         inputs=(("dy", dy), ("x", x), ("weight", weight)))
    dweight = be.empty(ns, x.dtype)
    dbias = be.empty(ns, x.dtype)
    be.layer_norm_backward(dy.reshape(m, d), x.reshape(m, d), mean.reshape(m),
                           invstd.reshape(m), None if weight is None else weight.reshape(d),
                           dx.reshape(m, d), dweight.reshape(d), dbias.reshape(d))
    return dx, dweight, dbias
