"""Public softmax functions: validation, output allocation, one backend call."""
import numpy as np

from fastnn._backend import backend_of
from fastnn._validation import check_reduction, integer, real_scalar

__all__ = ["softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad"]


def _axis(x, axis, name):
    """``axis`` of the (at least 1-D) array ``x`` as a non-negative int."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d array")
    ax = integer(axis, "axis")
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"axis {ax} is out of bounds for {name} of shape {tuple(x.shape)}")
    return ax % x.ndim


def _softmax(x, axis, log):
    be = backend_of(x)
    # Any layout: the CPU launcher reads the last axis in place or moves it
    # there; the CUDA one makes its input contiguous.
    x = be.float_array(x, "x", contiguous=False)
    ax = _axis(x, axis, "x")
    out = be.empty(x.shape, x.dtype)
    be.softmax(x, ax, log, out)
    return out


def softmax(x, axis=-1):
    """Softmax along ``axis``, computed stably (the row maximum is subtracted).

    Parameters
    ----------
    x : ndarray of float32 or float64, at least 1-D
        Any layout (Fortran, strided, read-only); never modified.
    axis : int, default -1
        The axis along which the probabilities sum to 1.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``, C-contiguous.

    Raises
    ------
    TypeError
        ``x`` is not float32/float64 (ints, float16), ``axis`` not an integer.
    ValueError
        ``x`` is 0-d or ``axis`` is out of range.

    Notes
    -----
    ``softmax(x)_j = exp(x_j - m) / sum_k exp(x_k - m)`` with ``m = max_k x_k``,
    so logits of +-1e4 give exact finite probabilities.  Sums accumulate in
    float64.  A NaN anywhere in a slice makes that whole slice NaN; a slice
    of all ``-inf`` (or containing ``+inf``) is NaN, as in torch.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> F.softmax(np.array([[1.0, 1.0], [0.0, 1e4]]))
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    return _softmax(x, axis, log=False)


def log_softmax(x, axis=-1):
    """Logarithm of the softmax along ``axis``, computed stably.

    Parameters
    ----------
    x : ndarray of float32 or float64, at least 1-D
        Any layout; never modified.
    axis : int, default -1
        The axis along which ``exp(log_softmax(x))`` sums to 1.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``, C-contiguous.

    Raises
    ------
    TypeError
        ``x`` is not float32/float64, ``axis`` not an integer.
    ValueError
        ``x`` is 0-d or ``axis`` is out of range.

    Notes
    -----
    ``log_softmax(x)_j = (x_j - m) - log(sum_k exp(x_k - m))``, ``m = max_k x_k``
    (log-sum-exp): never ``log(0)`` for finite logits, exact for logits of
    +-1e4.  NaN in a slice gives NaN in that slice; ``-inf`` logits give
    ``-inf`` where the others are finite.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> F.log_softmax(np.array([0.0, 1e4]))
    array([-10000.,      0.])
    """
    return _softmax(x, axis, log=True)


def _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, out,
                   with_grad):
    be = backend_of(logits, target, weight, out)
    logits = be.float_array(logits, "logits", ndim=2)
    n, c = logits.shape
    if c == 0:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    ignore_index = integer(ignore_index, "ignore_index", low=-2**63, high=2**63 - 1)
    target = be.class_labels(target, n, c, "target", ignore_index=ignore_index)
    reduction = check_reduction(reduction)
    smoothing = real_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    if weight is not None:
        weight = be.float_array(weight, "weight", ndim=1, dtype=logits.dtype)
        if weight.shape[0] != c:
            raise ValueError(f"weight must have shape ({c},) (one per class), "
                             f"got {tuple(weight.shape)}")
    if with_grad:
        # The kernel reads each logit before writing its gradient, so out may
        # be the logits buffer itself (in place).
        grad = be.output_array(out, logits.shape, logits.dtype, [("logits", logits)])
    else:
        grad = be.empty((0, 0), logits.dtype)
    losses = be.empty(n, np.float64)
    total = be.cross_entropy(logits, target, weight, ignore_index, smoothing,
                             reduction == "mean", losses, grad, with_grad)
    loss = be.astype(losses, logits.dtype) if reduction == "none" else total
    return (loss, grad) if with_grad else loss


_CE_DOC_PARAMS = """
    Parameters
    ----------
    logits : ndarray of float32 or float64, shape (N, C)
        Unnormalized scores; any layout; never modified (unless passed as
        ``out``).
    target : ndarray of int, shape (N,)
        Class indices in ``[0, C)``, or ``ignore_index``.
    weight : ndarray, shape (C,), optional
        Per-class weights (the dtype of ``logits``), as torch's ``weight``.
    ignore_index : int, default -100
        Rows whose target equals it contribute 0 to the loss, 0 to the
        gradient and nothing to the ``mean`` denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
"""

_CE_DOC_NOTES = """
    Notes
    -----
    Exactly torch's ``cross_entropy`` for class-index targets.  With
    ``p = softmax(logits)``, ``eps = label_smoothing``, ``w`` the class weights
    (ones by default) and ``q_ij = (1 - eps) w[t_i] [j == t_i] + (eps / C) w_j``,
    row ``i`` contributes ``l_i = -sum_j q_ij log p_ij``.  ``"none"`` returns
    ``l`` (0 for ignored rows), ``"sum"`` returns ``sum_i l_i`` and ``"mean"``
    returns ``sum_i l_i / sum_i w[t_i]`` over the rows not ignored (torch's
    weighted mean, also for the smoothing term).  An empty batch, or one
    where every row is ignored, gives NaN for ``"mean"`` (0 / 0, as torch) and
    0 for ``"sum"``.  ``log p`` is computed by log-sum-exp (logits of +-1e4
    are exact); NaN in a row that is not ignored gives a NaN loss and a NaN
    gradient row.  Scalar losses are returned as a Python float, accumulated
    in float64 for either dtype.
"""


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          None, with_grad=False)


cross_entropy.__doc__ = (
    """Softmax cross-entropy between ``logits`` and integer class ``target``.
""" + _CE_DOC_PARAMS + """
    Returns
    -------
    loss : float or ndarray
        A Python float for ``"mean"``/``"sum"``; for ``"none"`` an (N,)
        array of the dtype of ``logits``.

    Raises
    ------
    TypeError
        Non-float logits, non-integer target, mixed float dtypes, non-numeric
        ``label_smoothing``/``ignore_index``.
    ValueError
        Wrong shapes, C = 0, unknown reduction, ``label_smoothing`` outside
        [0, 1].
    IndexError
        A target outside ``[0, C)`` that is not ``ignore_index``.
""" + _CE_DOC_NOTES + """
    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> round(F.cross_entropy(np.array([[0.0, 0.0]]), np.array([1])), 6)
    0.693147
""")


def cross_entropy_with_grad(logits, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, out=None):
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          out, with_grad=True)


cross_entropy_with_grad.__doc__ = (
    """Cross-entropy loss and its gradient with respect to ``logits``, in one fused pass.

    Each row is read once from memory: its max, the sum of exponentials, the
    loss term and the gradient are computed while the row is in the cache.
""" + _CE_DOC_PARAMS + """    out : ndarray, shape (N, C), optional
        Where to write the gradient: a C-contiguous writeable array of the
        logits' dtype.  It may be ``logits`` itself (the gradient then
        overwrites the logits in place) but no other view overlapping them.

    Returns
    -------
    loss : float or ndarray
        As :func:`cross_entropy`.
    dlogits : ndarray, shape (N, C)
        The gradient of ``loss`` (of ``loss.sum()`` for ``"none"``), in the
        logits' dtype; ``out`` when given.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy`; also a bad ``out``.
""" + _CE_DOC_NOTES + """
    The gradient of row ``i`` is ``scale * (p_i * sum_j q_ij - q_i)``, with
    ``scale = 1 / sum_i w[t_i]`` for ``"mean"`` and 1 otherwise; 0 for
    ignored rows (torch gives NaN there when the ignored row holds NaN).

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, d = F.cross_entropy_with_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> d
    array([[ 0.5, -0.5]])
""")
