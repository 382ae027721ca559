"""Input checks shared by every public fastnn function.

Public wrappers call these before any kernel runs, so a bad argument raises a
clear exception naming the offending value and nothing has been touched.  The
kernels themselves trust their inputs and never re-check.
"""
import math
import numbers
import operator

import numpy as np

from fastnn import memory
from fastnn._cpu import activations as _act
from fastnn._cpu._common import first_bad_label

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REDUCTIONS = ("mean", "sum", "none")


def is_device_array(x):
    """True for a GPU array (numba device array, CuPy array, torch CUDA tensor)."""
    return hasattr(x, "__cuda_array_interface__")


def float_dtype(dtype, name="dtype"):
    """``dtype`` as a numpy dtype, which must be float32 or float64 (else TypeError)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def float_array(x, name, ndim=None, dtype=None, contiguous=True):
    """Return ``x`` as a float32/float64 ndarray, C-contiguous by default.

    Parameters
    ----------
    x : array_like
        The argument to check.  Lists are accepted; they must produce a
        float32 or float64 array.
    name : str
        The argument's name, used in error messages.
    ndim : int or tuple of int, optional
        Allowed number(s) of dimensions.
    dtype : numpy.dtype, optional
        Required dtype (the dtype of another operand: mixing float32 and
        float64 is refused rather than silently promoted).
    contiguous : bool
        Return a C-contiguous array (a copy only when ``x`` is not one
        already; a read-only input stays read-only and is never written).

    Raises
    ------
    TypeError
        Not an array of float32/float64, or a dtype other than ``dtype``.
    ValueError
        Wrong number of dimensions.
    """
    if type(x) is np.ndarray:
        arr = x
    elif isinstance(x, np.ma.MaskedArray):
        # a plain view would turn the masked values into data
        raise TypeError(f"{name} is a masked array; fill or drop the masked values first "
                        f"(e.g. {name}.filled(...) or {name}.compressed())")
    elif isinstance(x, np.ndarray):
        # A subclass (np.matrix, whose ravel() stays 2-D; a memmap) is read
        # through a plain view of the same memory: the kernels index flat
        # views, and a subclass's own methods may not give them.
        arr = x.view(np.ndarray)
    else:
        if is_device_array(x):
            raise TypeError(f"{name} is a GPU array; pass a host numpy array "
                            "or call the function with every operand on the GPU")
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}") from exc
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype} but the other operands are "
                        f"{np.dtype(dtype)}; convert explicitly (no silent promotion)")
    if ndim is not None and arr.ndim != ndim:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {arr.shape}")
    if contiguous and not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _byte_bounds(a):
    """[low, high) addresses spanned by a host or device array (any strides)."""
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    low = high = iface["data"][0]
    shape = iface["shape"]
    itemsize = np.dtype(iface["typestr"]).itemsize
    if 0 in shape:
        return low, low
    strides = iface.get("strides")
    if strides is None:                      # C-contiguous
        return low, low + math.prod(shape) * itemsize
    for n, st in zip(shape, strides):
        if st > 0:
            high += (n - 1) * st
        else:
            low += (n - 1) * st
    return low, high + itemsize


def may_share_memory(a, b):
    """Whether the memory spans of two host or two device arrays overlap (conservative)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        # numpy's own bounds test: ~0.3 us, against ~9 us for two interfaces
        return np.may_share_memory(a, b)
    a_low, a_high = _byte_bounds(a)
    b_low, b_high = _byte_bounds(b)
    return a_low < b_high and b_low < a_high


def check_shape(arr, shape, name):
    """Raise ValueError unless ``arr.shape == shape``."""
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")


def check_choice(value, name, choices):
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if not isinstance(value, (str, type(None))) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")
    return value


def check_reduction(reduction):
    return check_choice(reduction, "reduction", REDUCTIONS)


def real_scalar(value, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a Python float after a range check.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open``.
    NaN is always refused.
    """
    # The exact-type test first: isinstance against the numbers ABC costs
    # ~0.5 us, a noticeable share of a small kernel call.
    if type(value) is not float and (isinstance(value, bool)
                                      or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def boolean(value, name):
    """Return ``value`` as a Python bool; only True/False (or numpy bools) pass.

    A truthiness test would silently read ``"False"`` or ``0.5`` as True.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def integer(value, name, low=None, high=None):
    """Return ``value`` as a Python int (numpy integers accepted, bool refused).

    ``low``/``high`` are inclusive bounds.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def shape_tuple(shape, name="shape"):
    """``shape`` as a tuple of non-negative Python ints (an int means 1-D)."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{name} must be an int or a tuple of non-negative ints, got {shape!r}")
    return tuple(integer(s, f"{name} entry", low=0) for s in shape)


def normalized_shape(value, name="normalized_shape"):
    """A layer norm's ``normalized_shape`` as a non-empty tuple of positive ints.

    An int means one trailing dimension (torch's convention).
    """
    shape = shape_tuple(value, name)
    if not shape or 0 in shape:
        raise ValueError(f"{name} must be one or more positive sizes, got {value!r}")
    return shape


def class_labels(target, n_samples, n_classes, name="target", ignore_index=None):
    """Return integer class labels as a contiguous int64 array of shape (N,).

    Every label must lie in ``[0, n_classes)`` or equal ``ignore_index``.
    The kernels do no bounds checking, so this check is what stands between
    a label of -1 and a silent read of the last class.
    """
    arr = target if isinstance(target, np.ndarray) else np.asarray(target)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), got {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() >= n_classes:
        # Checked before the int64 conversion, which would wrap 2**64 - 100
        # around to -100 (the default ignore_index) and drop the sample silently.
        i = int(np.argmax(arr >= n_classes))
        raise IndexError(f"{name}[{i}] = {arr[i]} is out of range for {n_classes} classes")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    # One compiled pass (~1 us at small N) instead of numpy's min and max
    # (~1.5 us of call overhead each).
    i = first_bad_label(arr, n_classes, 0 if ignore_index is None else ignore_index,
                        ignore_index is not None)
    if i >= 0:
        raise IndexError(f"{name}[{i}] = {arr[i]} is out of range for {n_classes} classes"
                         + (f" (ignore_index={ignore_index})" if ignore_index is not None else ""))
    return arr


ACTIVATIONS = {None: _act.NONE, "relu": _act.RELU,
               "leaky_relu": _act.LEAKY_RELU, "tanh": _act.TANH,
               "sigmoid": _act.SIGMOID}


def activation_code(activation, negative_slope):
    """(kernel code, slope as float) of an activation name, after checking both.

    The codes are those of :mod:`fastnn._cpu.activations`, which the CUDA kernels
    share.
    """
    check_choice(activation, "activation", tuple(ACTIVATIONS))
    # The backward pass reads the derivative off the output y, and y > 0
    # identifies the input's sign only when the slope is not negative.
    slope = real_scalar(negative_slope, "negative_slope", low=0.0, high=math.inf,
                        high_open=True)
    return ACTIVATIONS[activation], slope


def as_rng(rng):
    """A ``numpy.random.Generator`` from an int seed, a Generator, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    return np.random.default_rng(integer(rng, "rng", low=0))


def output_array(out, shape, dtype, inputs=(), inplace_ok=True):
    """A new C-contiguous array (:func:`fastnn.memory.empty`), or ``out`` checked.

    Writing into a reused buffer skips the page faults of a fresh large
    allocation (the kernel zeroes every new page: a hidden extra write of the
    whole output, about a third of a memory-bound kernel's time); the
    output cache of :mod:`fastnn.memory` does the same for new outputs.

    Parameters
    ----------
    out : ndarray or None
        None for a new array; else a writeable C-contiguous ndarray of exactly
        ``shape`` and ``dtype``.
    inputs : sequence of (name, ndarray or None)
        The kernel's operands.  ``out`` may be one of them itself when
        ``inplace_ok`` (kernels that read element i before writing element i),
        never a partial overlap of one.

    Raises
    ------
    TypeError
        ``out`` is not a plain ndarray (subclasses such as np.matrix are
        refused), or has the wrong dtype.
    ValueError
        Wrong shape, not writeable/C-contiguous, or overlapping an input.
    """
    if out is None:
        return memory.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy ndarray, got {type(out).__name__}")
    if type(out) is not np.ndarray:
        # A subclass would be returned as the result, with its own semantics
        # (np.matrix's ravel() stays 2-D and made the kernels write far past
        # the buffer); np.asarray(out) is a plain view of the same memory.
        raise TypeError(f"out must be a plain numpy.ndarray, got the subclass "
                        f"{type(out).__module__}.{type(out).__name__}; pass "
                        "out=np.asarray(out) to write into its memory")
    return check_output(out, shape, dtype, out.flags.c_contiguous and out.flags.writeable,
                        inputs, inplace_ok, np.may_share_memory)


def _data_address(a):
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    return iface["data"][0]


def check_output(out, shape, dtype, usable, inputs=(), inplace_ok=True,
                 overlaps=may_share_memory):
    """The checks of an ``out=`` buffer that every device shares (same messages).

    Parameters
    ----------
    out : array
        A host or device array (the caller has checked which).
    shape, dtype
        What the output must be.
    usable : bool
        Whether ``out`` is writeable and C-contiguous (how to tell differs
        by device).
    inputs, inplace_ok
        As :func:`output_array`.
    overlaps : callable
        ``overlaps(a, out)``: whether two arrays may share memory.

    Returns
    -------
    out

    Raises
    ------
    TypeError
        Wrong dtype.
    ValueError
        Wrong shape, not writeable C-contiguous, or overlapping an input.
    """
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if not usable:
        raise ValueError("out must be a writeable C-contiguous array")
    for name, a in inputs:
        if a is None or not overlaps(a, out):
            continue
        same = (inplace_ok and tuple(a.strides) == tuple(out.strides)
                and tuple(a.shape) == tuple(out.shape)
                and _data_address(a) == _data_address(out))
        if not same:
            hint = "the input itself (in place) or a separate array" if inplace_ok \
                else "a separate array"
            raise ValueError(f"out overlaps {name}; pass {hint}")
    return out
