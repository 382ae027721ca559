"""fastnn: Numba-accelerated kernels for setting up the data and the loss.

Data preprocessing, weight initialization, fused linear layers, batch
normalization, dropout, regularization and losses, each a fast CPU kernel
(``fastnn._cpu``) behind a validating public function (``fastnn.functional``).
"""
__version__ = "0.1.0"

from . import functional, init, memory, preprocessing  # noqa: F401
