"""Public regularization functions: validation, output allocation, one backend call."""
import math

from fastnn._backend import backend_of
from fastnn._validation import FLOAT_DTYPES, real_scalar

__all__ = ["l2_penalty", "l1_penalty", "max_norm_"]


def _lam(lam):
    lam = real_scalar(lam, "lam", low=0.0)
    if math.isinf(lam):
        raise ValueError("lam must be finite, got inf")
    return lam


def _penalty(kind, w, lam, out):
    be = backend_of(w, out)
    arr = be.float_array(w, "w")
    lam = _lam(lam)
    grad = be.output_array(out, arr.shape, arr.dtype, [("w", arr)])
    return lam * getattr(be, kind)(arr, grad, lam), grad


def l2_penalty(w, lam, out=None):
    """L2 (weight decay) penalty and its gradient, in one pass.

    Parameters
    ----------
    w : ndarray of float32 or float64, any shape and layout
        Weights.
    lam : float >= 0, finite
        Regularization strength.
    out : ndarray, optional
        Destination of the gradient: a writable C-contiguous array of the
        shape and dtype of ``w`` (may be ``w`` itself).

    Returns
    -------
    loss : float
        ``lam * sum(w**2)``, accumulated in float64.
    grad : ndarray, same shape and dtype as ``w``
        ``2 * lam * w``.

    Raises
    ------
    TypeError
        ``w`` not float32/float64, ``lam`` not a real number.
    ValueError
        ``lam`` negative, NaN or inf; a bad ``out``.

    Notes
    -----
    R(w) = lam * sum_i w_i**2, dR/dw = 2 * lam * w: the gradient pulls every
    weight towards zero in proportion to its size.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, grad = F.l2_penalty(np.array([1.0, -2.0]), 0.5)
    >>> loss, grad.tolist()
    (2.5, [1.0, -2.0])
    """
    return _penalty("l2_penalty", w, lam, out)


def l1_penalty(w, lam, out=None):
    """L1 (sparsity) penalty and its (sub)gradient, in one pass.

    Parameters
    ----------
    w : ndarray of float32 or float64, any shape and layout
        Weights.
    lam : float >= 0, finite
        Regularization strength.
    out : ndarray, optional
        Destination of the gradient: a writable C-contiguous array of the
        shape and dtype of ``w`` (may be ``w`` itself).

    Returns
    -------
    loss : float
        ``lam * sum(|w|)``, accumulated in float64.
    grad : ndarray, same shape and dtype as ``w``
        ``lam * sign(w)``, with ``sign(0) = 0``.

    Raises
    ------
    TypeError
        ``w`` not float32/float64, ``lam`` not a real number.
    ValueError
        ``lam`` negative, NaN or inf; a bad ``out``.

    Notes
    -----
    R(w) = lam * sum_i |w_i|, dR/dw = lam * sign(w): a constant pull towards
    zero that drives small weights to exactly zero.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, grad = F.l1_penalty(np.array([1.0, -2.0, 0.0]), 0.5)
    >>> loss, grad.tolist()
    (1.5, [0.5, -0.5, 0.0])
    """
    return _penalty("l1_penalty", w, lam, out)


def max_norm_(weight, c):
    """Max-norm constraint, in place: rows with L2 norm above ``c`` are rescaled to norm ``c``.

    Parameters
    ----------
    weight : ndarray of float32 or float64, shape (out, in), writable
        Each row is one neuron's incoming weight vector.  Any layout
        (Fortran order, strided views) is modified in place.
    c : float > 0
        The largest allowed row norm (``inf`` leaves every row alone).

    Returns
    -------
    weight : ndarray
        The same object, modified in place.

    Raises
    ------
    TypeError
        ``weight`` not a float32/float64 ndarray, ``c`` not a real number.
    ValueError
        ``weight`` not 2-D or read-only; ``c`` <= 0 or NaN.

    Notes
    -----
    If ||w_r|| > c then w_r <- c * w_r / ||w_r||, with the norm computed in
    float64 (rescaled first if the squares overflow); the rescaled norm
    equals ``c`` up to one rounding per element.  Rows within the bound, and
    rows containing NaN or inf (no finite rescaling exists), are never
    written, so they stay bit-for-bit unchanged.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> w = np.array([[3.0, 4.0], [0.3, 0.4]])
    >>> F.max_norm_(w, 1.0).tolist()
    [[0.6000000000000001, 0.8], [0.3, 0.4]]
    """
    be = backend_of(weight)
    w = be.inplace_array(weight, "weight", "it is modified in place")
    if w.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weight must be float32 or float64, got dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weight must have 2 dimensions (out, in), got shape {tuple(w.shape)}")
    if not be.is_writeable(weight):
        raise ValueError("weight is read-only; max_norm_ modifies it in place")
    c = real_scalar(c, "c", low=0.0, low_open=True)
    be.max_norm_(w, c)
    return weight
