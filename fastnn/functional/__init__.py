"""fastnn.functional: the public kernels, numpy arrays in, numpy arrays out.

Every function validates its arguments (shapes, dtypes, ranges, strings)
before any kernel touches memory, allocates its outputs, then makes one call
into the backend of its arrays (:func:`fastnn._backend.backend_of`).
float32 and float64 are supported; the output dtype is the input dtype, and
operands of mixed float dtypes are refused.

GPU arrays (anything with ``__cuda_array_interface__``: numba device arrays,
CuPy arrays, torch CUDA tensors) are accepted too: when any array argument is
on the GPU, the same checks run and the CUDA backend (imported only then, so
``import fastnn`` needs no numba-cuda) launches the CUDA twins and returns
device arrays.  Mixing host and device operands is a TypeError; a GPU array
without a usable CUDA driver is a RuntimeError saying so.

Use as ``import fastnn.functional as F``.
"""
from . import _batchnorm, _dropout, _layernorm, _linear, _losses, _regularization, _softmax
from ._batchnorm import *  # noqa: F403
from ._dropout import *  # noqa: F403
from ._layernorm import *  # noqa: F403
from ._linear import *  # noqa: F403
from ._losses import *  # noqa: F403
from ._regularization import *  # noqa: F403
from ._softmax import *  # noqa: F403

__all__ = (_linear.__all__ + _batchnorm.__all__ + _dropout.__all__
           + _softmax.__all__ + _losses.__all__ + _regularization.__all__
           + _layernorm.__all__)
