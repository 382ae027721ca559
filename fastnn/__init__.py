"""fastnn: Numba-accelerated kernels for setting up the data and the loss.

Data preprocessing, weight initialization, fused linear layers, batch
normalization, dropout, regularization and losses, each a fast CPU kernel
(``fastnn._cpu``) behind a validating public function (``fastnn.functional``).

Importing fastnn sets ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=3000``
in ``os.environ`` (so child processes inherit them) when neither is set, so
that numba's OpenMP workers sleep after a short spin instead of spinning on
the cores that BLAS and the next kernel need.  To opt out, set either
variable yourself before the import (for example ``OMP_WAIT_POLICY=ACTIVE``):
fastnn then sets neither.  ``fastnn info`` shows what was set and by whom.
"""
__version__ = "0.1.0"

from . import functional, init, memory, preprocessing  # noqa: F401
from ._config import set_parallel_threads  # noqa: F401
