"""Public batchnorm functions: validation, output allocation, one backend call."""
import numpy as np

from fastnn._backend import backend_of
from fastnn._validation import boolean, check_shape, may_share_memory, real_scalar

__all__ = ["batch_norm", "batch_norm_backward"]


# ------------------------------------------------------------ argument rules

def _array(be, a, name, ndim, dtype):
    # The 2-D kernels read any strides on the GPU (the CPU launchers make
    # their inputs contiguous); per-column vectors are made contiguous.
    return be.float_array(a, name, ndim=ndim, dtype=dtype, contiguous=ndim != 2)


def _per_column(be, a, name, c, dtype):
    """An optional (C,) parameter of x's dtype (read only)."""
    if a is None:
        return None
    a = _array(be, a, name, 1, dtype)
    check_shape(a, (c,), name)
    return a


def _check_no_overlap(running_mean, running_var, x, weight, bias):
    """Training updates the running statistics in place before y is computed:
    an overlap with any array the kernel reads, or with each other, would
    feed updated values into y (or lose an update)."""
    named = (("running_mean", running_mean), ("running_var", running_var), ("x", x),
             ("weight", weight), ("bias", bias))
    for i, (stat_name, stat) in enumerate(named[:2]):
        for other_name, other in named[i + 1:]:
            if other is not None and may_share_memory(stat, other):
                raise ValueError(f"{stat_name} shares memory with {other_name}; training "
                                 "updates the running statistics in place, so they must not "
                                 "overlap x, weight, bias or each other")


def _forward_args(be, x, running_mean, running_var, weight, bias, training, momentum, eps):
    """The checked arguments of :func:`batch_norm`, in its order, and ``update``.

    Absent running statistics in training stay None (nothing is tracked);
    ``update`` says whether the kernel updates them.
    """
    x = _array(be, x, "x", 2, None)
    n, c = x.shape
    training = boolean(training, "training")
    momentum = real_scalar(momentum, "momentum", low=0.0, high=1.0)
    eps = real_scalar(eps, "eps", low=0.0, low_open=True)
    weight = _per_column(be, weight, "weight", c, x.dtype)
    bias = _per_column(be, bias, "bias", c, x.dtype)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if training:
        if n == 1:
            raise ValueError(f"batch norm in training needs more than 1 sample per feature "
                             f"(the batch variance is undefined), got x of shape {tuple(x.shape)}")
        if running_mean is not None:
            running_mean = be.running_stat(running_mean, "running_mean", c, x.dtype)
            running_var = be.running_stat(running_var, "running_var", c, x.dtype)
            _check_no_overlap(running_mean, running_var, x, weight, bias)
    else:
        if running_mean is None:
            raise ValueError("eval mode (training=False) normalizes with the running "
                             "statistics: running_mean and running_var are required")
        running_mean = _per_column(be, running_mean, "running_mean", c, x.dtype)
        running_var = _per_column(be, running_var, "running_var", c, x.dtype)
    update = training and running_mean is not None and n > 0
    return x, running_mean, running_var, weight, bias, training, momentum, eps, update


def _backward_args(be, dy, x, mean, invstd, weight, training):
    """The checked arguments of :func:`batch_norm_backward`, in its order.

    ``mean`` and ``invstd`` keep their dtype (float64 or x's): the caller
    converts them to float64.
    """
    x = _array(be, x, "x", 2, None)
    c = x.shape[1]
    dy = _array(be, dy, "dy", 2, x.dtype)
    check_shape(dy, x.shape, "dy")
    training = boolean(training, "training")
    stats = []
    for a, name in ((mean, "mean"), (invstd, "invstd")):
        a = _array(be, a, name, 1, None)
        if a.dtype != np.float64 and a.dtype != x.dtype:
            allowed = "float64" + ("" if x.dtype == np.float64 else f" or {x.dtype}")
            raise TypeError(f"{name} must be {allowed}, got {a.dtype}")
        check_shape(a, (c,), name)
        stats.append(a)
    weight = _per_column(be, weight, "weight", c, x.dtype)
    return dy, x, stats[0], stats[1], weight, training


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, out=None):
    """Batch normalization of the columns (features) of ``x``.

    Parameters
    ----------
    x : ndarray, shape (N, C), float32 or float64
        A batch of N samples with C features.  Any layout.
    running_mean, running_var : ndarray, shape (C,), x's dtype, or None
        Running statistics.  In training mode they are updated in place (so
        they must be writeable C-contiguous ndarrays) or may both be None
        (nothing is tracked).  In eval mode they are required and only read.
    weight, bias : ndarray, shape (C,), x's dtype, optional
        The learnable scale gamma (default 1) and shift beta (default 0).
    training : bool
        True: normalize with the batch statistics and update the running
        statistics.  False (``model.eval()``): normalize with the running
        statistics only.
    momentum : float in [0, 1]
        Weight of the new batch in the running statistics (torch convention).
    eps : float > 0
        Added to the variance before the square root.
    out : ndarray, shape (N, C), x's dtype, optional
        Writeable C-contiguous buffer for y, sharing no memory with the other
        arguments.  Without it, a large y comes from the buffer cache of
        :mod:`fastnn.memory`.

    Returns
    -------
    y : ndarray, shape (N, C), x's dtype
    mean : ndarray, shape (C,), float64
        The mean used (batch mean in training, a copy of running_mean in eval).
    invstd : ndarray, shape (C,), float64
        1 / sqrt(var + eps) with the variance used (biased batch variance in
        training, running_var in eval).  ``mean`` and ``invstd`` are what
        :func:`batch_norm_backward` needs.  They are float64 even for float32
        x (torch returns float32): rounding a mean of 1e4 to float32 moves it
        by 6e-4, an error of that size in every normalized value the backward
        pass recomputes.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes (every array must have x's dtype), a
        running statistic that is not an ndarray in training, a non-bool
        ``training``.
    ValueError
        x not 2-D, a (C,) shape mismatch, N == 1 in training (the variance of
        one sample is undefined, as torch), eps <= 0, momentum outside [0, 1],
        running statistics missing in eval mode, only one of them given, or
        read-only / non-contiguous in training; an ``out`` of the wrong
        shape, not writeable C-contiguous, or overlapping an input.  Nothing is modified when an
        error is raised.

    Notes
    -----
    Training, per column: mu = mean(x), var = mean((x - mu)^2) (biased),
    y = (x - mu) / sqrt(var + eps) * weight + bias, and
    running_mean <- (1 - momentum) running_mean + momentum mu,
    running_var <- (1 - momentum) running_var + momentum var * N / (N - 1).
    Eval: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
    Statistics use Welford's update per row chunk, merged with Chan's
    formula, in float64: stable for data far from zero (1e4 + N(0, 1) in
    float32 normalizes to unit variance).  An empty batch in training gives
    an empty y, NaN mean/invstd and leaves the running statistics unchanged.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> y, mean, invstd = F.batch_norm(x, rm, rv, training=True)
    >>> np.round(y, 4)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> rm, rv
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    be = backend_of(x, running_mean, running_var, weight, bias, out)
    x, running_mean, running_var, weight, bias, training, momentum, eps, update = _forward_args(
        be, x, running_mean, running_var, weight, bias, training, momentum, eps)
    n, c = x.shape
    y = be.output_array(out, (n, c), x.dtype, inplace_ok=False,
                        inputs=(("x", x), ("weight", weight), ("bias", bias),
                                ("running_mean", running_mean), ("running_var", running_var)))
    mean = be.empty(c, np.float64)
    invstd = be.empty(c, np.float64)
    if training:
        be.batch_norm_train(x, weight, bias, eps, running_mean, running_var, update, momentum,
                            y, mean, invstd)
    else:
        be.batch_norm_eval(x, running_mean, running_var, weight, bias, eps, y, mean, invstd)
    return y, mean, invstd


def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True, out=None):
    """Gradients of :func:`batch_norm` with respect to x, weight and bias.

    Parameters
    ----------
    dy : ndarray, shape (N, C)
        Gradient of the loss with respect to y; x's dtype.
    x : ndarray, shape (N, C), float32 or float64
        The forward input.
    mean, invstd : ndarray, shape (C,), float64 or x's dtype
        As returned by :func:`batch_norm` (float64 keeps full accuracy).
    weight : ndarray, shape (C,), x's dtype, optional
        The forward scale gamma (default 1).
    training : bool
        Must match the forward call.  True: the statistics were computed from
        this batch, so the gradient flows through them.  False: the
        statistics were constants (running statistics).
    out : ndarray, shape (N, C), x's dtype, optional
        Buffer for dx, as ``out`` of :func:`batch_norm`.

    Returns
    -------
    dx : ndarray, shape (N, C), x's dtype
    dweight, dbias : ndarray, shape (C,), x's dtype
        Gradients with respect to gamma and beta.  Returned even when
        ``weight`` is None: they are then the gradients with respect to the
        implicit gamma = 1 and beta = 0.

    Raises
    ------
    TypeError
        Non-float or mixed dtypes, a non-bool ``training``.
    ValueError
        Shape mismatches, an unusable ``out``.

    Notes
    -----
    With xhat = (x - mean) * invstd and sums over the N rows:
    dbias = sum(dy), dweight = sum(dy * xhat);
    training: dx = weight * invstd / N * (N dy - sum(dy) - xhat sum(dy xhat));
    eval: dx = dy * weight * invstd.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> x = np.array([[1.0], [3.0]])
    >>> y, mean, invstd = F.batch_norm(x, None, None, training=True)
    >>> dx, dw, db = F.batch_norm_backward(np.array([[1.0], [0.0]]), x, mean, invstd)
    >>> db, np.round(dw, 4)
    (array([1.]), array([-1.]))
    """
    be = backend_of(dy, x, mean, invstd, weight, out)
    dy, x, mean, invstd, weight, training = _backward_args(be, dy, x, mean, invstd, weight,
                                                           training)
    n, c = x.shape
    dx = be.output_array(out, (n, c), x.dtype, inplace_ok=False,
                         inputs=(("dy", dy), ("x", x), ("weight", weight)))
    dweight = be.empty(c, x.dtype)
    dbias = be.empty(c, x.dtype)
    be.batch_norm_backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias)
    return dx, dweight, dbias
