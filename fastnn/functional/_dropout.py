"""Public dropout functions: validation, output allocation, one backend call."""

import numpy as np

from fastnn._backend import backend_of, cpu
from fastnn._cpu.rng import MAX_SEED
from fastnn._validation import boolean, integer, real_scalar, shape_tuple

__all__ = ["dropout", "dropout_backward", "dropout_mask"]


def _seed(seed):
    return integer(seed, "seed", low=0, high=MAX_SEED)


def keep_threshold(p):
    """The kernels' keep threshold of drop probability ``p``: element i is kept iff
    u(seed, i) >= it, u uniform on [0, 2**32) (so P(keep) = 1 - p, p quantized
    to a multiple of 2**-32); p = 1 gives 2**32, which keeps nothing.

    The one definition, with :func:`survivor_scale`: the layers' dropout and
    the compiled engine (:mod:`fastnn.engine`) both take theirs from here.
    """
    return np.int64(round(p * 2.0 ** 32))


def survivor_scale(p, dtype):
    """The factor ``1 / (1 - p)`` of the kept elements, in ``dtype`` (0 for p = 1)."""
    return np.dtype(dtype).type(0.0 if p == 1.0 else 1.0 / (1.0 - p))


def _apply(be, arr, p, seed, out, name, identity):
    """The checked ``out`` (or a new array) holding ``arr``'s dropout."""
    dest = be.output_array(out, arr.shape, arr.dtype, [(name, arr)])
    if identity:
        be.copyto(dest, arr)
    elif arr.size:
        be.dropout(arr, dest, seed, keep_threshold(p), survivor_scale(p, arr.dtype))
    return dest


def dropout(x, p=0.5, training=True, seed=0, out=None):
    """Inverted dropout with a counter-based mask that is never stored.

    Parameters
    ----------
    x : ndarray of float32 or float64, any shape and layout
        Activations.
    p : float in [0, 1]
        Probability of DROPPING each element.
    training : bool
        When False, dropout is the identity (a copy of ``x`` is returned).
    seed : int in [0, 2**64)
        Selects the mask.  The same (seed, shape, p) always gives the same
        mask; use a new seed for every training step.
    out : ndarray, optional
        Destination: a writable C-contiguous array of the shape and dtype of
        ``x`` (``x`` itself for in-place dropout).  Without it, a large
        result comes from the buffer cache of :mod:`fastnn.memory`.

    Returns
    -------
    y : ndarray, C-contiguous, same shape and dtype as ``x``
        ``x * mask / (1 - p)``; a new array (or ``out``) even when dropout is
        the identity.

    Raises
    ------
    TypeError
        ``x`` not float32/float64; ``seed`` not an integer; ``training`` not a bool.
    ValueError
        ``p`` outside [0, 1] or NaN; ``seed`` negative or >= 2**64; a bad ``out``.

    Notes
    -----
    Element ``i`` (flat C-order index of the logical shape, so every memory
    layout gets the same mask) is kept iff ``u(seed, i) >= round(p * 2**32)``,
    where ``u`` is the 32-bit counter-based stream of :mod:`fastnn._cpu.rng`
    (two keyed 32-bit hash rounds of the index).  Survivors are scaled by ``1 / (1 - p)`` so
    that ``E[y] = x``; at test time no scaling is needed.  ``p = 0`` and
    ``training=False`` return an exact copy; ``p = 1`` returns zeros.  As in
    torch, the mask is multiplied in, so NaN or inf in a dropped position
    gives NaN.  The generator differs from torch's: masks are not
    reproducible across the two libraries, only their distribution.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> y = F.dropout(np.ones((2, 4), np.float32), p=0.5, seed=1)
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    be = backend_of(x, out)
    arr = be.float_array(x, "x")
    p = real_scalar(p, "p", 0.0, 1.0)
    training = boolean(training, "training")
    seed = _seed(seed)
    return _apply(be, arr, p, seed, out, "x", not training or p == 0.0)


def dropout_backward(dy, p, seed, out=None):
    """Gradient of :func:`dropout` (training mode): regenerates the mask.

    Parameters
    ----------
    dy : ndarray of float32 or float64
        Gradient with respect to the dropout output.
    p : float in [0, 1]
        The drop probability used in the forward pass.
    seed : int in [0, 2**64)
        The seed used in the forward pass.
    out : ndarray, optional
        Destination, as in :func:`dropout` (``dy`` itself for in place).

    Returns
    -------
    dx : ndarray, same shape and dtype as ``dy``
        ``dy * mask / (1 - p)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`dropout`.

    Notes
    -----
    dropout is linear in ``x`` with the diagonal Jacobian ``mask / (1 - p)``,
    so the backward pass is the forward pass applied to ``dy``; no mask is
    read from memory.

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> x = np.ones(8, np.float32)
    >>> bool(np.array_equal(F.dropout_backward(x, 0.3, 7), F.dropout(x, 0.3, seed=7)))
    True
    """
    be = backend_of(dy, out)
    arr = be.float_array(dy, "dy")
    p = real_scalar(p, "p", 0.0, 1.0)
    seed = _seed(seed)
    return _apply(be, arr, p, seed, out, "dy", p == 0.0)


def dropout_mask(shape, p, seed):
    """The keep-mask that :func:`dropout` uses, for inspection.

    Parameters
    ----------
    shape : int or tuple of int
        The logical shape of the activations.
    p : float in [0, 1]
        Drop probability.
    seed : int in [0, 2**64)
        The seed given to :func:`dropout`.

    Returns
    -------
    mask : ndarray of bool, shape ``shape``
        True where the element is kept.

    Raises
    ------
    TypeError
        ``shape`` not an int or a tuple of ints.
    ValueError
        A negative dimension, ``p`` outside [0, 1], a bad ``seed``.

    Notes
    -----
    ``dropout(x, p, seed=s) == x * dropout_mask(x.shape, p, s) / (1 - p)``.

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.dropout_mask((2, 3), 0.0, seed=0).all()
    np.True_
    """
    shape = shape_tuple(shape)
    p = real_scalar(p, "p", 0.0, 1.0)
    seed = _seed(seed)
    # No array argument says where: the mask is made on the host (the CUDA
    # backend's dropout_mask makes the same bits on the device).
    out = cpu.empty(shape, np.bool_)
    cpu.dropout_mask(out, seed, keep_threshold(p))
    return out
