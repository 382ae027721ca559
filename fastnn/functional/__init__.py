"""fastnn.functional: the public kernels, numpy arrays in, numpy arrays out.

Every function validates its arguments (shapes, dtypes, ranges, strings)
before any kernel touches memory, then calls one private kernel from
``fastnn._cpu``.  float32 and float64 are supported; the output dtype is the
input dtype, and operands of mixed float dtypes are refused.

GPU arrays (anything with ``__cuda_array_interface__``: numba device arrays,
CuPy arrays, torch CUDA tensors) are accepted too: when any array argument is
on the GPU, the call goes to the same-named function of
``fastnn._cuda.functional`` (imported only then, so ``import fastnn`` needs no
numba-cuda), which runs the CUDA twins and returns device arrays.  Mixing
host and device operands is a TypeError; a GPU array without a usable CUDA
driver is a RuntimeError saying so.

Use as ``import fastnn.functional as F``.
"""
import functools

import numpy as np

from fastnn._validation import is_device_array

from . import _batchnorm, _dropout, _linear, _losses, _regularization, _softmax
from ._batchnorm import *  # noqa: F403
from ._dropout import *  # noqa: F403
from ._linear import *  # noqa: F403
from ._losses import *  # noqa: F403
from ._regularization import *  # noqa: F403
from ._softmax import *  # noqa: F403

__all__ = (_linear.__all__ + _batchnorm.__all__ + _dropout.__all__
           + _softmax.__all__ + _losses.__all__ + _regularization.__all__)


# Types that are never on a GPU: checked first, because this test runs on
# every argument of every call and the full test below costs ~0.3 us each.
_HOST_TYPES = frozenset({np.ndarray, float, int, bool, str, type(None), tuple, list})


def _on_device(a):
    # numba's CUDA simulator arrays have no __cuda_array_interface__ but stand
    # for device arrays all the same.
    return is_device_array(a) or type(a).__module__.startswith("numba.cuda.simulator")


def _dispatching(cpu_fn):
    """``cpu_fn``, sent to its GPU twin when any argument is a device array."""
    name = cpu_fn.__name__
    host_only = _HOST_TYPES.issuperset

    @functools.wraps(cpu_fn)
    def fn(*args, **kwargs):
        # The usual call, all host types, is settled by two C-level set tests
        # (~0.1 us; a Python-level test per argument cost ~0.5-0.8 us a call).
        if host_only(map(type, args)) and (not kwargs or host_only(map(type, kwargs.values()))):
            return cpu_fn(*args, **kwargs)
        if any(_on_device(a) for a in (*args, *kwargs.values())):
            from fastnn._cuda import functional as gpu  # lazy: numba.cuda only when needed
            return getattr(gpu, name)(*args, **kwargs)
        return cpu_fn(*args, **kwargs)
    return fn


# dropout_mask takes no array: it stays on the CPU (its GPU twin is
# fastnn._cuda.functional.dropout_mask).
for _name in __all__:
    if _name != "dropout_mask":
        globals()[_name] = _dispatching(globals()[_name])
del _name
