"""Which backend runs a call: :func:`backend_of`, and the device helpers the layers above use.

A backend is a module with one interface: allocation (``empty``, ``zeros``,
``copy``, ``copyto``, ``astype``, ``to_host``, ``from_host``), the operand
rules that differ by device (``float_array``, ``class_labels``,
``output_array``, ``running_stat``, ``inplace_array``, ``is_writeable``) and,
per topic, launchers with identical signatures (``linear``,
``batch_norm_train``, ``dropout``, ``softmax``, ``cross_entropy``, ...,
and for :mod:`fastnn.nn` and :mod:`fastnn.optim`: ``activation``,
``activation_grad``, ``accumulate_``, ``zeros_like``, ``sgd_step``,
``adam_step``).
:mod:`fastnn._cpu.backend` is the CPU one; :mod:`fastnn._cuda.backend`, the
CUDA one, is imported only when a GPU array shows up, so ``import fastnn``
needs no numba-cuda.  :mod:`fastnn.functional` validates each call once and
ends in ``backend_of(arrays).<op>(...)``.  Modules above the backend ask it
here rather than importing :mod:`fastnn._cuda` themselves.
"""
import numpy as np

from fastnn._cpu import backend as cpu
from fastnn._cuda import is_available, on_device, require_cuda, simulator_enabled

__all__ = ["backend_of", "cpu", "cuda", "on_device", "require_cuda", "is_available",
           "simulator_enabled", "device_of", "to_device", "copy",
           "assign", "host_copy"]

# Types that are never on a GPU: checked first, because backend_of runs on
# every call and on_device costs ~0.3 us an argument.
_HOST_TYPES = frozenset({np.ndarray, float, int, bool, str, type(None), tuple, list})
_host_only = _HOST_TYPES.issuperset


def cuda():
    """The CUDA backend, :mod:`fastnn._cuda.backend` (imported on first use).

    Raises
    ------
    RuntimeError
        numba-cuda is missing or no CUDA device is usable (the message says
        which).
    """
    from fastnn._cuda import backend
    return backend


def backend_of(*arrays):
    """The backend for a call on ``arrays``: CUDA when any of them is on the GPU.

    Parameters
    ----------
    *arrays
        The call's array arguments (None and Python scalars are allowed).

    Returns
    -------
    module
        :mod:`fastnn._cpu.backend` or :mod:`fastnn._cuda.backend`.  Mixed
        host and device operands go to the CUDA backend, whose operand checks
        refuse the host ones with a TypeError naming them.

    Raises
    ------
    RuntimeError
        A GPU array was given but CUDA is not usable.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn._backend import backend_of
    >>> backend_of(np.ones(3), None).NAME
    'cpu'
    """
    # The usual call, all host types, is settled by one C-level set test.
    if _host_only(map(type, arrays)):
        return cpu
    for a in arrays:
        if on_device(a):
            return cuda()
    return cpu


# ------------------------------------------------------------------ arrays across devices
# What nn, train and the engine need to move parameters and data: each asks
# the backend of the array instead of testing array types itself.

def device_of(a):
    """``"cpu"`` or ``"cuda"``: where the array ``a`` lives.

    Host arrays of any ndarray subclass (``np.memmap``, ``np.matrix``) are
    ``"cpu"``: only an object with ``__cuda_array_interface__`` (or a
    simulator array) is on the GPU.
    """
    return "cpu" if type(a) is np.ndarray or not on_device(a) else "cuda"


_DEVICES = ("cpu", "cuda")


def to_device(a, device):
    """``a`` on ``device`` ("cpu" or "cuda"): ``a`` itself if it is there already.

    Raises
    ------
    ValueError
        ``device`` is neither "cpu" nor "cuda" (checked first, whatever ``a`` is).
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if a is None or device_of(a) == device:
        return a
    return cuda().from_host(a) if device == "cuda" else cuda().to_host(a)


def copy(a):
    """A copy of the array ``a`` on its own device."""
    return a.copy() if type(a) is np.ndarray else backend_of(a).copy(a)


def assign(dest, src):
    """``dest[...] = src`` in place: ``dest`` a host or device array, ``src`` a host
    array or one on dest's device (a host ``src`` is copied to dest's device).

    A host ``dest`` of any ndarray subclass (an ``np.memmap``) is written
    in place on the host; a device ``src`` is brought to the host first.
    """
    if device_of(dest) == "cpu":
        dest[...] = src if device_of(src) == "cpu" else cuda().to_host(src)
    elif device_of(src) == "cuda":
        cuda().copyto(dest, src)
    else:
        cuda().copyto(dest, cuda().from_host(src))


def host_copy(a):
    """A host numpy copy of ``a``, wherever it lives (never ``a`` itself).

    Always a new base-class ``np.ndarray``: a memmap (or other subclass)
    gives a copy of its values, not a live alias of the file.
    """
    if device_of(a) == "cpu":
        return np.array(a, order="C", copy=True, subok=False)
    return cuda().to_host(a)
