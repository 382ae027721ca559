"""fastnn.functional: the public kernels, numpy arrays in, numpy arrays out.

Every function validates its arguments (shapes, dtypes, ranges, strings)
before any kernel touches memory, then calls one private kernel from
``fastnn._cpu``.  float32 and float64 are supported; the output dtype is the
input dtype, and operands of mixed float dtypes are refused.

Use as ``import fastnn.functional as F``.
"""
from ._batchnorm import *  # noqa: F401,F403
from ._dropout import *  # noqa: F401,F403
from ._linear import *  # noqa: F401,F403
from ._losses import *  # noqa: F401,F403
from ._regularization import *  # noqa: F401,F403
from ._softmax import *  # noqa: F401,F403
from . import _batchnorm, _dropout, _linear, _losses, _regularization, _softmax

__all__ = (_linear.__all__ + _batchnorm.__all__ + _dropout.__all__
           + _softmax.__all__ + _losses.__all__ + _regularization.__all__)
