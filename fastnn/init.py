"""Weight initializers.

Every initializer takes ``shape``, ``dtype`` (float32 or float64) and ``rng``
(an int seed or a :class:`numpy.random.Generator`; numpy's global random state
is never used) and returns a new array.  Weights use the torch ``(out, in)``
layout, so ``fan_in = shape[1]`` and ``fan_out = shape[0]``; for shapes with
more than two dimensions (convolution kernels ``(out, in, *kernel)``) both are
multiplied by the receptive field size ``prod(shape[2:])``, as in torch.

Which one to use (the lesson's advice): zeros make every neuron identical (the
symmetry problem); a small Gaussian makes activations shrink layer by layer; a
unit Gaussian makes them explode.  Xavier (variance ``1/fan_in``) keeps the
activation variance constant through linear/tanh layers, He (variance
``2/fan_in``) compensates for ReLU zeroing half of them.
"""
import math

import numpy as np

from ._validation import as_rng, check_choice, float_dtype, real_scalar, shape_tuple

__all__ = ["zeros", "constant", "normal", "uniform", "xavier_normal", "xavier_uniform",
           "he_normal", "he_uniform", "calculate_gain"]

_SQRT3 = math.sqrt(3.0)


def _fans(shape):
    """(fan_in, fan_out) of an ``(out, in, *receptive_field)`` weight shape."""
    if len(shape) < 2:
        raise ValueError(f"fan-based initializers need a weight shape with at least 2 "
                         f"dimensions (out, in, ...), got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode, modes):
    fan_in, fan_out = _fans(shape)
    check_choice(mode, "mode", modes)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


# A standard normal draw beyond this many standard deviations has probability
# below 1e-23: weights of std * _MAX_SIGMAS + |mean| within the dtype's range
# are finite for any array that fits in memory.
_MAX_SIGMAS = 10.0


def _check_finite_range(value, name, dtype):
    limit = float(np.finfo(dtype).max)
    if not abs(value) <= limit:
        raise ValueError(f"{name} = {value!r} is beyond the {dtype} range (max {limit:.6g}): "
                         "the weights would not be finite")


def _normal(shape, std, mean, dtype, rng):
    """mean + std * N(0, 1) in ``dtype``; refuses parameters that cannot give finite weights."""
    _check_finite_range(abs(mean) + _MAX_SIGMAS * std,
                        f"|mean| + {_MAX_SIGMAS:g} std (std={std!r}, mean={mean!r})", dtype)
    out = rng.standard_normal(shape, dtype=dtype)
    out *= dtype.type(std)
    if mean != 0.0:
        out += dtype.type(mean)
    return out


def _uniform(shape, a, b, dtype, rng):
    """U[a, b) in ``dtype``, as a + (b - a) * U[0, 1); b - a must be finite in ``dtype``."""
    _check_finite_range(b - a, f"b - a (a={a!r}, b={b!r})", dtype)
    out = rng.random(shape, dtype=dtype)
    out *= dtype.type(b - a)
    out += dtype.type(a)
    return out


def zeros(shape, dtype=np.float32, rng=None):
    """All-zero weights (the lesson's counter-example: every neuron stays identical).

    Parameters
    ----------
    shape : tuple of int
        Weight shape.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Accepted so every initializer has the same signature; unused.

    Returns
    -------
    numpy.ndarray
        A new array of zeros.

    Raises
    ------
    TypeError, ValueError
        Bad shape entries or an unsupported dtype.

    Notes
    -----
    :math:`W = 0`.  Every neuron of a layer then computes the same output and
    receives the same gradient: the symmetry is never broken.

    Examples
    --------
    >>> from fastnn import init
    >>> float(init.zeros((2, 3)).sum())
    0.0
    """
    return np.zeros(shape_tuple(shape), dtype=float_dtype(dtype))


def constant(shape, value, dtype=np.float32, rng=None):
    """Weights all equal to ``value``.

    Parameters
    ----------
    shape : tuple of int
        Weight shape.
    value : float
        Fill value (NaN refused).
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Accepted for a uniform signature; unused.

    Returns
    -------
    numpy.ndarray
        A new array filled with ``value``.

    Raises
    ------
    TypeError, ValueError
        Bad shape, non-real value, a value that is not finite in ``dtype``,
        unsupported dtype.

    Notes
    -----
    :math:`W_{ij} = c`.

    Examples
    --------
    >>> from fastnn import init
    >>> init.constant((2,), 0.1, dtype=np.float64)
    array([0.1, 0.1])
    """
    value = real_scalar(value, "value")
    dtype = float_dtype(dtype)
    _check_finite_range(value, "value", dtype)
    return np.full(shape_tuple(shape), value, dtype=dtype)


def normal(shape, std=1.0, mean=0.0, dtype=np.float32, rng=None):
    """Weights drawn from :math:`\\mathcal{N}(\\text{mean}, \\text{std}^2)`.

    Parameters
    ----------
    shape : tuple of int
        Weight shape.
    std : float
        Standard deviation, >= 0 (the lesson's "small random" is ``std=0.01``).
    mean : float
        Mean.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator (a Generator's state advances).  None draws fresh
        entropy.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    TypeError, ValueError
        Bad shape, dtype, ``std < 0``, NaN parameters, negative seed;
        ``std`` or ``mean`` so large that the weights would not be finite in
        ``dtype`` (``|mean| + 10 std`` beyond its range).

    Notes
    -----
    :math:`W_{ij} \\sim \\mathcal{N}(\\mu, \\sigma^2)`.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.normal((256, 128), std=0.01, rng=0)
    >>> w.dtype, w.shape
    (dtype('float32'), (256, 128))
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    std = real_scalar(std, "std", low=0.0, high=math.inf, high_open=True)
    mean = real_scalar(mean, "mean")
    return _normal(shape, std, mean, dtype, as_rng(rng))


def uniform(shape, a=0.0, b=1.0, dtype=np.float32, rng=None):
    """Weights drawn from :math:`\\mathcal{U}(a, b)`.

    Parameters
    ----------
    shape : tuple of int
        Weight shape.
    a, b : float
        Bounds, ``a < b``, both finite.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    TypeError, ValueError
        Bad shape, dtype, ``a >= b`` or infinite bounds.

    Notes
    -----
    :math:`W_{ij} = a + (b - a) u`, :math:`u \\sim \\mathcal{U}[0, 1)`; the
    variance is :math:`(b - a)^2 / 12`.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.uniform((3, 4), a=-0.1, b=0.1, rng=0)
    >>> bool(abs(w).max() <= 0.1)
    True
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    a = real_scalar(a, "a", low=-np.finfo(np.float64).max)
    b = real_scalar(b, "b", high=np.finfo(np.float64).max)
    if not a < b or not math.isfinite(b - a):
        raise ValueError(f"uniform needs finite a < b, got a={a!r}, b={b!r}")
    return _uniform(shape, a, b, dtype, as_rng(rng))


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (as ``torch.nn.init.calculate_gain``).

    Parameters
    ----------
    nonlinearity : str
        One of "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
        "leaky_relu", "selu".
    param : float, optional
        The negative slope for "leaky_relu" (default 0.01).

    Returns
    -------
    float
        The gain.

    Raises
    ------
    ValueError
        Unknown nonlinearity, or a ``param`` given where none is used.
    TypeError
        Non-real ``param``.

    Notes
    -----
    linear/conv/sigmoid: 1; tanh: 5/3; relu: :math:`\\sqrt{2}`; leaky_relu:
    :math:`\\sqrt{2 / (1 + a^2)}`; selu: 3/4.

    Examples
    --------
    >>> from fastnn import init
    >>> round(init.calculate_gain("relu"), 6)
    1.414214
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
              "conv_transpose2d", "conv_transpose3d", "sigmoid")
    check_choice(nonlinearity, "nonlinearity", linear + ("tanh", "relu", "leaky_relu", "selu"))
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else real_scalar(param, "param")
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if param is not None:
        raise ValueError(f"nonlinearity {nonlinearity!r} takes no param, got {param!r}")
    if nonlinearity in linear:
        return 1.0
    return {"tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}[nonlinearity]


def _xavier_std(shape, gain, mode):
    fan = _fan(shape, mode, ("fan_in", "fan_avg"))
    gain = real_scalar(gain, "gain", low=0.0, high=math.inf, high_open=True)
    return gain / math.sqrt(fan) if fan > 0 else 0.0


def xavier_normal(shape, gain=1.0, mode="fan_in", dtype=np.float32, rng=None):
    """Xavier/Glorot normal weights.

    Parameters
    ----------
    shape : tuple of int
        Weight shape ``(out, in, *receptive_field)``, at least 2-D.
    gain : float
        Scale factor (see :func:`calculate_gain`), >= 0.
    mode : {"fan_in", "fan_avg"}
        "fan_in": variance ``gain**2 / fan_in`` (the lesson's statement);
        "fan_avg": Glorot's ``gain**2 * 2 / (fan_in + fan_out)`` (as
        ``torch.nn.init.xavier_normal_``).
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions, unknown mode, negative gain.
    TypeError
        Bad shape entries or dtype.

    Notes
    -----
    :math:`W_{ij} \\sim \\mathcal{N}(0, g^2 / n)` with :math:`n = n_{in}`
    or :math:`n = (n_{in} + n_{out}) / 2`.  A linear layer then keeps
    :math:`\\mathrm{Var}(y) = \\mathrm{Var}(x)`.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.xavier_normal((512, 256), rng=0)
    >>> bool(abs(w.var() * 256 - 1) < 0.05)
    True
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    std = _xavier_std(shape, gain, mode)
    return _normal(shape, std, 0.0, dtype, as_rng(rng))


def xavier_uniform(shape, gain=1.0, mode="fan_in", dtype=np.float32, rng=None):
    """Xavier/Glorot uniform weights (same variance as :func:`xavier_normal`).

    Parameters
    ----------
    shape : tuple of int
        Weight shape, at least 2-D.
    gain : float
        Scale factor, >= 0.
    mode : {"fan_in", "fan_avg"}
        As in :func:`xavier_normal`.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions, unknown mode, negative gain.
    TypeError
        Bad shape entries or dtype.

    Notes
    -----
    :math:`W_{ij} \\sim \\mathcal{U}(-b, b)`, :math:`b = g \\sqrt{3 / n}`, so
    the variance :math:`b^2/3 = g^2/n` matches :func:`xavier_normal`.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.xavier_uniform((64, 32), mode="fan_avg", rng=0)
    >>> bool(abs(w).max() <= (6 / 96) ** 0.5)
    True
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    bound = _SQRT3 * _xavier_std(shape, gain, mode)
    return _uniform(shape, -bound, bound, dtype, as_rng(rng))


def _he_std(shape, mode, negative_slope):
    fan = _fan(shape, mode, ("fan_in", "fan_out"))
    gain = calculate_gain("leaky_relu", negative_slope)
    return gain / math.sqrt(fan) if fan > 0 else 0.0


def he_normal(shape, mode="fan_in", negative_slope=0.0, dtype=np.float32, rng=None):
    """He/Kaiming normal weights for (leaky) ReLU networks.

    Parameters
    ----------
    shape : tuple of int
        Weight shape, at least 2-D.
    mode : {"fan_in", "fan_out"}
        "fan_in" preserves the variance of activations in the forward pass,
        "fan_out" that of gradients in the backward pass.
    negative_slope : float
        Slope of a leaky ReLU for negative inputs (torch's ``a``); 0 for ReLU.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions, unknown mode.
    TypeError
        Bad shape entries or dtype.

    Notes
    -----
    :math:`W_{ij} \\sim \\mathcal{N}(0, 2 / ((1 + a^2)\\, n))`: ReLU zeroes
    half the activations, so the variance of Xavier is doubled.  Equals
    ``torch.nn.init.kaiming_normal_(w, a, mode, nonlinearity="leaky_relu")``.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.he_normal((512, 256), rng=0)
    >>> bool(abs(w.var() * 256 / 2 - 1) < 0.05)
    True
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    std = _he_std(shape, mode, negative_slope)
    return _normal(shape, std, 0.0, dtype, as_rng(rng))


def he_uniform(shape, mode="fan_in", negative_slope=0.0, dtype=np.float32, rng=None):
    """He/Kaiming uniform weights (same variance as :func:`he_normal`).

    Parameters
    ----------
    shape : tuple of int
        Weight shape, at least 2-D.
    mode : {"fan_in", "fan_out"}
        As in :func:`he_normal`.
    negative_slope : float
        Leaky ReLU slope (torch's ``a``); 0 for ReLU.
    dtype : {numpy.float32, numpy.float64}
        Output dtype.
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        A new array.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions, unknown mode.
    TypeError
        Bad shape entries or dtype.

    Notes
    -----
    :math:`W_{ij} \\sim \\mathcal{U}(-b, b)`,
    :math:`b = \\sqrt{6 / ((1 + a^2)\\, n)}`.

    Examples
    --------
    >>> from fastnn import init
    >>> w = init.he_uniform((64, 32), rng=0)
    >>> bool(abs(w).max() <= (6 / 32) ** 0.5)
    True
    """
    shape, dtype = shape_tuple(shape), float_dtype(dtype)
    bound = _SQRT3 * _he_std(shape, mode, negative_slope)
    return _uniform(shape, -bound, bound, dtype, as_rng(rng))
