"""asv benchmarks: every fastnn kernel over size (float32).

One class per kernel, parameterized over ``size`` (64 x 256: call overhead,
4096 x 1024: fits in L3, plus the shapes the performance targets name) and
``dtype`` (float32: the history tracks what the README's tables show).
DRAM-sized arrays are ``fastnn bench``'s: its "% of STREAM" pairs each call
with a STREAM probe, the only honest bandwidth figure on a shared machine,
and ``fastnn bench --dtypes float32,float64`` covers both dtypes.
``setup`` builds the data and calls the kernel once, so JIT compilation
(or loading numba's cache) is never timed; a kernel that does not exist in
the benchmarked commit raises ``NotImplementedError`` in setup, which asv
reports as skipped.  The calls are those of ``fastnn bench``
(:mod:`fastnn.bench._cases` of the benchmarked commit).

``FASTNN_ASV_SIZES`` (comma-separated NxD, e.g. ``64x256``) replaces the
size parameter of every class: the CI step uses it to stay within minutes.
asv passes the environment to the processes that discover and run the
benchmarks.  A result recorded under a restricted size list is only
comparable with runs that used the same list (asv keys results by
parameter values), so such results are not committed.
"""
import os

import numpy as np

from fastnn.bench import _cases

DTYPES = ["float32"]


def _sizes(*extra):
    """The size parameter: the default sizes plus ``extra``, or FASTNN_ASV_SIZES."""
    env = os.environ.get("FASTNN_ASV_SIZES", "").strip()
    if env:
        sizes = [s.strip() for s in env.split(",") if s.strip()]
        for s in sizes:
            _cases.parse_shape(s)  # a bad value fails discovery, naming it
        return sizes
    return ["64x256", "4096x1024", *extra]


SIZES = _sizes()


class _KernelBenchmark:
    """Base class: subclasses set ``kernel`` (a name in fastnn.bench._cases)."""

    kernel = None
    params = [SIZES, DTYPES]
    param_names = ["size", "dtype"]
    timeout = 600
    # Large sizes take up to a second per call: few samples are enough.
    number = 0
    repeat = (3, 7, 4.0)

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


class LayerNormForward(_KernelBenchmark):
    kernel = "layer_norm_fwd"


class LayerNormForwardBackward(_KernelBenchmark):
    kernel = "layer_norm_fwd_bwd"


class DropoutForward(_KernelBenchmark):
    kernel = "dropout_fwd"


class DropoutBackward(_KernelBenchmark):
    kernel = "dropout_bwd"


class Softmax(_KernelBenchmark):
    kernel = "softmax"


class CrossEntropy(_KernelBenchmark):
    """Fused softmax-CE forward + backward, N x C (C = 1000 too)."""
    kernel = "cross_entropy_fwd_bwd"
    params = [_sizes("4096x1000"), DTYPES]


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
