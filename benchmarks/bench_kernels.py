"""asv benchmarks: every fastnn kernel over size and dtype.

One class per kernel, parameterized over ``size`` (small 64 x 256, medium
4096 x 1024, DRAM-sized 32768 x 1024, plus the shapes the performance
targets name) and ``dtype``.  ``setup`` builds the data and calls the kernel
once, so JIT compilation (or loading numba's cache) is never timed; a kernel
that does not exist yet raises ``NotImplementedError`` in setup, which asv
reports as skipped.  The calls are those of ``fastnn bench``
(:mod:`fastnn.bench._cases`).

Run offline against the installed environment::

    asv machine --yes
    asv run -E existing --quick --show-stderr

``FASTNN_ASV_SIZES`` (comma-separated NxD, e.g. ``64x256``) replaces the size
parameter of every class: the CI smoke run uses it to stay within seconds
per benchmark.  asv passes the environment to the processes that discover
and run the benchmarks, so set it for both commands::

    FASTNN_ASV_SIZES=64x256 asv machine --yes
    FASTNN_ASV_SIZES=64x256 asv run -E existing --quick --show-stderr

A result recorded under a restricted size list is only comparable with runs
that used the same list (asv keys results by parameter values).
"""
import os

import numpy as np

from fastnn.bench import _cases

DTYPES = ["float32", "float64"]


def _sizes(*extra):
    """The size parameter: the default sizes plus ``extra``, or FASTNN_ASV_SIZES."""
    env = os.environ.get("FASTNN_ASV_SIZES", "").strip()
    if env:
        sizes = [s.strip() for s in env.split(",") if s.strip()]
        for s in sizes:
            _cases.parse_shape(s)  # a bad value fails discovery, naming it
        return sizes
    return ["64x256", "4096x1024", "32768x1024", *extra]


SIZES = _sizes()


class _KernelBenchmark:
    """Base class: subclasses set ``kernel`` (a name in fastnn.bench._cases)."""

    kernel = None
    params = [SIZES, DTYPES]
    param_names = ["size", "dtype"]
    timeout = 600
    # Large sizes take up to a second per call: few samples are enough.
    number = 0
    repeat = (1, 10, 20.0)

    def setup(self, size, dtype):
        k = _cases.KERNELS_BY_NAME[self.kernel]
        missing = k.missing()
        if missing:
            raise NotImplementedError("not implemented yet: " + ", ".join(missing))
        n, d = _cases.parse_shape(size)
        self.data = k.setup(n, d, np.dtype(dtype).type)
        self.fn, _ = k.build("fastnn", self.data)
        self.fn()  # compile or load from cache, outside the timing

    def teardown(self, size, dtype):
        self.data = self.fn = None

    def time_kernel(self, size, dtype):
        self.fn()


class LinearForward(_KernelBenchmark):
    """linear + bias + ReLU, N x D x D (the 256-row size is a target)."""
    kernel = "linear_fwd"
    params = [_sizes("256x1024"), DTYPES]


class LinearBackward(_KernelBenchmark):
    kernel = "linear_bwd"
    params = [_sizes("256x1024"), DTYPES]


class BatchNormTrainForward(_KernelBenchmark):
    kernel = "batch_norm_train_fwd"


class BatchNormTrainForwardBackward(_KernelBenchmark):
    kernel = "batch_norm_train_fwd_bwd"


class BatchNormEval(_KernelBenchmark):
    kernel = "batch_norm_eval_fwd"


class DropoutForward(_KernelBenchmark):
    kernel = "dropout_fwd"


class DropoutBackward(_KernelBenchmark):
    kernel = "dropout_bwd"


class Softmax(_KernelBenchmark):
    kernel = "softmax"


class CrossEntropy(_KernelBenchmark):
    """Fused softmax-CE forward + backward, N x C (C = 1000, 32768 too)."""
    kernel = "cross_entropy_fwd_bwd"
    params = [_sizes("4096x1000", "1024x32768"), DTYPES]


class Hinge(_KernelBenchmark):
    kernel = "hinge_fwd_bwd"


class MSE(_KernelBenchmark):
    kernel = "mse_fwd_bwd"


class L1Loss(_KernelBenchmark):
    kernel = "l1_loss_fwd_bwd"


class L2Penalty(_KernelBenchmark):
    kernel = "l2_penalty"


class L1Penalty(_KernelBenchmark):
    kernel = "l1_penalty"


class MaxNorm(_KernelBenchmark):
    """Restore + project (every row restored from a copy, then projected)."""
    kernel = "max_norm_"


class StandardScalerFitTransform(_KernelBenchmark):
    kernel = "standard_scaler_fit_transform"


class PCAWhiten(_KernelBenchmark):
    kernel = "pca_whiten_fit_transform"
