"""Type-check and lower every CUDA kernel for the REAL CUDA target, without a GPU.

The simulator runs kernels as Python, so it cannot catch what only numba's
CUDA compiler rejects (an untyped global, a uint64 + int64 that becomes a
float, a CPU dispatcher called from device code).  This test compiles each
kernel to LLVM IR for compute capability 9.0 with both float dtypes; only
the final NVVM step (which needs the CUDA toolkit) is skipped.

It needs numba-cuda and must run WITHOUT the simulator; CI runs it in the
CUDA step with FASTNN_TEST_CUDA_LOWERING=1 (it takes a while, so the default
run skips it).
"""
import os
import types as pytypes

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("lowering needs the real numba.cuda target (the simulator is enabled)",
                allow_module_level=True)
if os.environ.get("FASTNN_TEST_CUDA_LOWERING") != "1":
    pytest.skip("set FASTNN_TEST_CUDA_LOWERING=1 to lower the CUDA kernels (CI's CUDA step)",
                allow_module_level=True)
pytest.importorskip("numba.cuda")

import numba.cuda.dispatcher as _dispatcher
from numba import types as nt
from numba.cuda.compiler import compile_cuda

# Device functions ask the current device for its compute capability; there is none.
_dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))

from fastnn._cuda import (
    _common,
    activations,
    batchnorm,
    dropout,
    layernorm,
    linear,
    losses,
    optim,
    regularization,
    rng,
    softmax,
)

pytestmark = pytest.mark.no_device   # needs neither a GPU nor the simulator

f64, i64, u64, b1 = nt.float64, nt.int64, nt.uint64, nt.boolean


def A(dt, nd=1, layout="C"):
    return nt.Array(dt, nd, layout)


def _kernels(dt):
    """(kernel, argument types) for every kernel, with data of dtype dt."""
    x2, x1, xa = A(dt, 2), A(dt, 1), A(dt, 2, "A")
    d1, d2 = A(f64, 1), A(f64, 2)
    return [
        (_common.sum_1d, (d1, d1, i64)),
        (_common.copy_2d, (xa, x2)),
        (_common.copy_1d, (A(dt, 1, "A"), x1)),
        (_common.fill, (x1, dt)),
        (_common.first_bad_label, (A(i64, 1), i64, i64, b1, A(i64, 1))),
        (rng.fill_uint32, (A(nt.uint32, 1), u64, i64)),
        (dropout.dropout_scale, (x1, x1, u64, i64, dt)),
        (dropout.dropout_mask, (A(nt.boolean, 1), u64, i64)),
        (linear.bias_activation_, (x2, x1, i64, dt)),
        (linear.activation_grad_bias_sum, (xa, xa, i64, dt, x2, d2)),
        (linear.column_sum, (xa, d2)),
        (linear.column_sum, (d2, d2)),
        (linear.matmul, (xa, xa, x2)),
        (batchnorm._partial_stats, (xa, d2, d2, d2)),
        (batchnorm._finalize_stats, (d2, d2, d2, i64, f64, x1, x1, b1, f64, d1, d1)),
        (batchnorm._normalize, (xa, d1, d1, x1, x1, b1, b1, x2)),
        (batchnorm._eval_stats, (x1, x1, f64, d1, d1)),
        (batchnorm._partial_grad_sums, (xa, xa, d1, d1, x1, b1, b1, x2, d2, d2)),
        (batchnorm._finalize_grads, (d2, d2, i64, d1, x1, b1, x1, x1, d1, d1, d1)),
        (batchnorm._train_dx, (xa, xa, d1, d1, d1, d1, x2)),
        (layernorm._forward_rows, (x2, x1, x1, b1, b1, f64, x2, d1, d1)),
        (layernorm._dx_rows, (x2, x2, d1, d1, x1, b1, x2)),
        (layernorm._param_partials, (x2, x2, d1, d1, d2, d2)),
        (layernorm._param_finalize, (d2, d2, x1, x1)),
        (softmax._softmax_rows, (x2, x2, b1, b1)),
        (softmax._softmax_axis, (A(dt, 3), A(dt, 3), b1)),
        (softmax._target_weight_sum, (A(i64, 1), x1, i64, d1)),
        (softmax._cross_entropy_rows, (x2, A(i64, 1), x1, i64, f64, b1, d1, d1, x2, b1, b1)),
        (softmax._reduce_total, (d1, b1, d1)),
        (losses._hinge_rows, (x2, A(i64, 1), f64, f64, d1, x2, b1)),
        (losses._regression_partial, (x1, x1, x1, f64, b1, b1, d1)),
        (losses._regression_none, (x1, x1, x1, x1, b1, b1)),
        (losses.first_outside_unit, (x1, A(i64, 1))),
        (losses._bce_partial, (x1, x1, x1, f64, b1, d1)),
        (losses._bce_none, (x1, x1, x1, x1, b1)),
        (regularization._penalty_partial, (x1, x1, f64, b1, d1)),
        (regularization._max_norm_rows, (A(dt, 2, "A"), f64)),
        (_common.copy_1d, (d1, x1)),   # the float64 -> dtype cast
        (activations.activation_forward, (x1, x1, i64, dt)),
        (activations.activation_backward, (x1, x1, i64, dt, x1)),
        (activations.add_, (x1, x1)),
        (optim.sgd_kernel, (x1, x1, x1, f64, f64, f64, b1, b1)),
        (optim.adam_kernel, (x1, x1, x1, x1) + (f64,) * 7 + (b1,)),
    ]


@pytest.mark.parametrize("dt", [nt.float32, nt.float64], ids=["float32", "float64"])
def test_every_kernel_lowers_for_the_cuda_target(dt):
    failures = []
    for kernel, sig in _kernels(dt):
        try:
            compile_cuda(kernel.py_func, nt.void, sig, cc=(9, 0))
        except Exception as exc:  # collect them all: one report lists every broken kernel
            failures.append(f"{kernel.py_func.__name__}{sig}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}")
    assert not failures, "\n".join(failures)
