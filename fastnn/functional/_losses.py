"""Public loss functions: validation, output allocation, one backend call.

Return convention (all losses here): a scalar reduction ("mean", "sum") is a
Python float computed with float64 accumulation, whatever the input dtype;
``reduction="none"`` returns an array in the input dtype.  Gradients always
have the input's shape and dtype; for "none" the gradient is that of the sum
of the per-sample losses.
"""
import math

import numpy as np

from fastnn._backend import backend_of
from fastnn._validation import check_reduction, check_shape, real_scalar

__all__ = ["hinge_loss", "hinge_loss_with_grad", "mse_loss", "mse_loss_with_grad",
           "l1_loss", "l1_loss_with_grad", "binary_cross_entropy_with_logits",
           "binary_cross_entropy_with_logits_with_grad"]


_MSE, _L1, _BCE = ("mse_sum", "mse_none"), ("l1_sum", "l1_none"), ("bce_sum", "bce_none")


def _mean(total, count):
    # An empty batch has an undefined mean: NaN, as torch.
    return total / count if count else math.nan


# ---------------------------------------------------------------- hinge

def _hinge(scores, target, margin, reduction, with_grad, out=None):
    be = backend_of(scores, target, out)
    s = be.float_array(scores, "scores", ndim=2)
    n, n_classes = s.shape
    y = be.class_labels(target, n, n_classes)
    margin = real_scalar(margin, "margin")
    if math.isinf(margin):
        raise ValueError("margin must be finite, got inf")
    check_reduction(reduction)
    gscale = 1.0 / n if (reduction == "mean" and n) else 1.0
    row_loss = be.empty(n, np.float64)
    if with_grad:
        grad = be.output_array(out, s.shape, s.dtype, [("scores", s)])
    else:
        grad = be.empty((n, 0), s.dtype)
    be.hinge(s, y, margin, gscale, row_loss, grad, with_grad)
    if reduction == "none":
        loss = be.astype(row_loss, s.dtype)
    elif reduction == "sum":
        loss = be.sum(row_loss)
    else:
        loss = _mean(be.sum(row_loss), n)
    return (loss, grad) if with_grad else loss


def hinge_loss(scores, target, margin=1.0, reduction="mean"):
    """Multiclass SVM (hinge) loss.

    Parameters
    ----------
    scores : ndarray of float32 or float64, shape (N, C)
        Class scores.
    target : array_like of int, shape (N,)
        Correct class of each sample, in [0, C).
    margin : float, finite
        The margin Delta (1 by default).
    reduction : {"mean", "sum", "none"}
        "mean" averages over the N samples.

    Returns
    -------
    loss : float, or ndarray of shape (N,) for reduction="none"

    Raises
    ------
    TypeError
        Non-float scores, non-integer target, non-real margin.
    ValueError
        scores not 2-D, target of the wrong shape, unknown reduction, NaN/inf margin.
    IndexError
        A label outside [0, C).

    Notes
    -----
    L_i = sum_{j != y_i} max(0, s_ij - s_{i,y_i} + margin); a term counts
    only when its margin is strictly positive.  torch's
    ``multi_margin_loss`` is this loss divided by C.  A NaN score makes its
    sample's loss NaN (torch skips it).  "mean" of an empty batch is NaN.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> round(F.hinge_loss(np.array([[3.2, 5.1, -1.7]]), [0]), 6)
    2.9
    """
    return _hinge(scores, target, margin, reduction, False)


def hinge_loss_with_grad(scores, target, margin=1.0, reduction="mean", out=None):
    """Multiclass SVM loss and its gradient with respect to the scores, in one pass.

    Parameters
    ----------
    scores, target, margin, reduction
        As :func:`hinge_loss`.
    out : ndarray, optional
        Destination of the gradient: a writable C-contiguous (N, C) array of
        the dtype of ``scores`` (may be ``scores`` itself).

    Returns
    -------
    loss : float, or ndarray of shape (N,) for reduction="none"
    dscores : ndarray, shape (N, C), dtype of ``scores``
        For j != y_i: g * [s_ij - s_{i,y_i} + margin > 0]; for j = y_i: minus
        g times the number of active margins; g = 1/N for "mean", 1 otherwise
        (for "none", the gradient of the sum).

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`hinge_loss`.

    Notes
    -----
    At an exact tie (margin term == 0) the term is inactive: its subgradient
    is taken as 0.  A sample with a NaN score gets a NaN loss and an all-NaN
    gradient row (on the CPU and the GPU alike).

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, ds = F.hinge_loss_with_grad(np.array([[3.2, 5.1, -1.7]]), [0])
    >>> ds.tolist()
    [[-1.0, 1.0, 0.0]]
    """
    return _hinge(scores, target, margin, reduction, True, out)


# ---------------------------------------------------------------- MSE / MAE

def _regression(kind, grad_factor, pred, target, reduction, with_grad, out=None,
                pred_name="pred"):
    """``kind``: the names of the backend's (sum, none) launchers of the loss.

    The BCE kind also requires every target in [0, 1].
    """
    be = backend_of(pred, target, out)
    p = be.float_array(pred, pred_name)
    t = be.float_array(target, "target", dtype=p.dtype)
    check_shape(t, p.shape, "target")
    check_reduction(reduction)
    if kind is _BCE:
        _check_probabilities(be, t)
    n = p.size
    if with_grad:
        grad = be.output_array(out, p.shape, p.dtype, [(pred_name, p), ("target", t)])
    else:
        grad = be.empty((0,), p.dtype)
    if reduction == "none":
        loss = be.empty(p.shape, p.dtype)
        getattr(be, kind[1])(p, t, loss, grad, with_grad)
    else:
        gscale = grad_factor / n if (reduction == "mean" and n) else grad_factor
        total = getattr(be, kind[0])(p, t, grad, gscale, with_grad)
        loss = total if reduction == "sum" else _mean(total, n)
    return (loss, grad) if with_grad else loss


def mse_loss(pred, target, reduction="mean"):
    """Mean squared error (L2 loss).

    Parameters
    ----------
    pred : ndarray of float32 or float64, any shape and layout
        Predictions.
    target : ndarray, same shape and dtype as ``pred``
        Targets (no broadcasting).
    reduction : {"mean", "sum", "none"}
        "mean" averages over all elements.

    Returns
    -------
    loss : float, or ndarray shaped like ``pred`` for reduction="none"

    Raises
    ------
    TypeError
        Non-float input or mixed float32/float64.
    ValueError
        Shapes differ; unknown reduction.

    Notes
    -----
    L = sum_i (pred_i - target_i)**2, divided by the number of elements for
    "mean" (NaN for an empty input, as torch).

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> F.mse_loss(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    2.0
    """
    return _regression(_MSE, 2.0, pred, target, reduction, False)


def mse_loss_with_grad(pred, target, reduction="mean", out=None):
    """Mean squared error and its gradient with respect to ``pred``, in one pass.

    Parameters
    ----------
    pred, target, reduction
        As :func:`mse_loss`.
    out : ndarray, optional
        Destination of the gradient: a writable C-contiguous array of the
        shape and dtype of ``pred`` (may be ``pred`` or ``target`` itself).

    Returns
    -------
    loss : float, or ndarray for reduction="none"
    dpred : ndarray, shape and dtype of ``pred``
        ``2 * (pred - target)``, divided by the element count for "mean".

    Raises
    ------
    TypeError, ValueError
        As :func:`mse_loss`.

    Notes
    -----
    dL/dpred_i = 2 (pred_i - target_i) / n: the gradient is proportional to
    the error, so outliers dominate.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, g = F.mse_loss_with_grad(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    >>> loss, g.tolist()
    (2.0, [0.0, -2.0])
    """
    return _regression(_MSE, 2.0, pred, target, reduction, True, out)


def l1_loss(pred, target, reduction="mean"):
    """Mean absolute error (L1 loss).

    Parameters
    ----------
    pred : ndarray of float32 or float64, any shape and layout
        Predictions.
    target : ndarray, same shape and dtype as ``pred``
        Targets (no broadcasting).
    reduction : {"mean", "sum", "none"}
        "mean" averages over all elements.

    Returns
    -------
    loss : float, or ndarray shaped like ``pred`` for reduction="none"

    Raises
    ------
    TypeError
        Non-float input or mixed float32/float64.
    ValueError
        Shapes differ; unknown reduction.

    Notes
    -----
    L = sum_i |pred_i - target_i|, divided by the number of elements for
    "mean" (NaN for an empty input, as torch).

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> F.l1_loss(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    1.0
    """
    return _regression(_L1, 1.0, pred, target, reduction, False)


def l1_loss_with_grad(pred, target, reduction="mean", out=None):
    """Mean absolute error and its (sub)gradient with respect to ``pred``, in one pass.

    Parameters
    ----------
    pred, target, reduction
        As :func:`l1_loss`.
    out : ndarray, optional
        Destination of the gradient, as in :func:`mse_loss_with_grad`.

    Returns
    -------
    loss : float, or ndarray for reduction="none"
    dpred : ndarray, shape and dtype of ``pred``
        ``sign(pred - target)`` (0 where they are equal), divided by the
        element count for "mean".

    Raises
    ------
    TypeError, ValueError
        As :func:`l1_loss`.

    Notes
    -----
    dL/dpred_i = sign(pred_i - target_i) / n, with the subgradient 0 at a
    zero residual (as torch): a constant-magnitude gradient, robust to
    outliers.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, g = F.l1_loss_with_grad(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    >>> loss, g.tolist()
    (1.0, [0.0, -0.5])
    """
    return _regression(_L1, 1.0, pred, target, reduction, True, out)


# ---------------------------------------------------------------- BCE with logits

def _check_probabilities(be, t):
    """ValueError naming the first target outside [0, 1] (NaN included), before any kernel."""
    bad = be.first_outside_unit(t)
    if bad is not None:
        index, value = bad
        where = ", ".join(str(int(i)) for i in np.unravel_index(index, tuple(t.shape)))
        raise ValueError(f"target must hold probabilities in [0, 1]; target[{where}] = {value}")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], computed stably.

    Parameters
    ----------
    logits : ndarray of float32 or float64, any shape and layout
        Raw scores (the sigmoid is applied inside, exactly).
    target : ndarray, same shape and dtype as ``logits``
        Probabilities in [0, 1] (0/1 labels, or soft targets); no broadcasting.
    reduction : {"mean", "sum", "none"}
        "mean" averages over all elements (as torch).

    Returns
    -------
    loss : float, or ndarray shaped like ``logits`` for reduction="none"

    Raises
    ------
    TypeError
        Non-float input or mixed float32/float64.
    ValueError
        Shapes differ; unknown reduction; a target outside [0, 1] or NaN (the
        message names the first one).

    Notes
    -----
    l_i = -[t_i log sigmoid(x_i) + (1 - t_i) log(1 - sigmoid(x_i))]
    = max(x_i, 0) - x_i t_i + log1p(exp(-|x_i|)), the form used here: no
    overflow at any finite logit (±1e4 gives 0 or 1e4, not inf or NaN).
    torch's ``binary_cross_entropy_with_logits`` without ``weight`` /
    ``pos_weight`` (not offered: per-sample weights are applied by
    :func:`fastnn.train.fit`'s ``sample_weight``).  A NaN logit gives a NaN
    loss; "mean" of an empty input is NaN.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> round(F.binary_cross_entropy_with_logits(np.array([0.0, 2.0]), np.array([1.0, 0.0])), 6)
    1.410038
    """
    return _regression(_BCE, 1.0, logits, target, reduction, False, pred_name="logits")


def binary_cross_entropy_with_logits_with_grad(logits, target, reduction="mean", out=None):
    """Binary cross-entropy with logits and its gradient with respect to ``logits``, in one pass.

    Parameters
    ----------
    logits, target, reduction
        As :func:`binary_cross_entropy_with_logits`.
    out : ndarray, optional
        Destination of the gradient: a writable C-contiguous array of the
        shape and dtype of ``logits`` (may be ``logits`` or ``target`` itself).

    Returns
    -------
    loss : float, or ndarray for reduction="none"
    dlogits : ndarray, shape and dtype of ``logits``
        ``sigmoid(logits) - target``, divided by the element count for
        "mean" (for "none", the gradient of the sum).

    Raises
    ------
    TypeError, ValueError
        As :func:`binary_cross_entropy_with_logits`.

    Notes
    -----
    dl_i/dx_i = sigmoid(x_i) - t_i: bounded by 1 in magnitude, whatever the
    logit, so a confidently wrong output does not blow the step up.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, g = F.binary_cross_entropy_with_logits_with_grad(
    ...     np.array([0.0, 0.0]), np.array([1.0, 0.0]), reduction="sum")
    >>> g.tolist()
    [-0.5, 0.5]
    """
    return _regression(_BCE, 1.0, logits, target, reduction, True, out, pred_name="logits")
