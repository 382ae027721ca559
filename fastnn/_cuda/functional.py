"""Device-side public functions: the GPU half of :mod:`fastnn.functional`.

:mod:`fastnn.functional` sends a call here when any array argument lives on
the GPU.  Each function has the signature, the validation rules and the
messages of its CPU counterpart, launches the twins in ``fastnn._cuda``, and
returns device arrays (numba device arrays; wrap them with ``cupy.asarray``
or ``torch.as_tensor`` for free).  Scalar losses are returned as Python
floats, as on the CPU (one small device-to-host copy).

Every array operand must be on the GPU: a host array among device arrays is
a TypeError, never a silent transfer.  Inputs are read in any strides for
the 2-D kernels; other non-contiguous inputs are copied on the device first.
"""
import math

import numpy as np

from fastnn._cuda import require_cuda

cuda = require_cuda()   # a clear RuntimeError here when no CUDA device is usable

from fastnn._cpu.rng import seed_key
from fastnn._cuda import (
    _common as _c,
    batchnorm as _bn,
    dropout as _do,
    linear as _li,
    losses as _lo,
    regularization as _re,
    softmax as _sm,
)
from fastnn._validation import (
    FLOAT_DTYPES,
    check_reduction,
    check_shape,
    integer,
    real_scalar,
    shape_tuple,
)
from fastnn.functional import (
    _batchnorm as _cpu_bn,
    _linear as _cpu_linear,
    _softmax as _cpu_softmax,
)

# The argument rules are the CPU side's own helpers, so the two cannot drift.
from fastnn.functional._dropout import _seed, _threshold
from fastnn.functional._losses import _mean
from fastnn.functional._regularization import _lam

__all__ = ["linear", "linear_backward", "batch_norm", "batch_norm_backward", "dropout",
           "dropout_backward", "dropout_mask", "softmax", "log_softmax", "cross_entropy",
           "cross_entropy_with_grad", "hinge_loss", "hinge_loss_with_grad", "mse_loss",
           "mse_loss_with_grad", "l1_loss", "l1_loss_with_grad", "l2_penalty", "l1_penalty",
           "max_norm_"]


# ------------------------------------------------------------------ operands

def _is_numba_device(x):
    return hasattr(x, "copy_to_host") and hasattr(x, "is_c_contiguous")


def device(x, name):
    """``x`` as a numba device array (zero-copy view of CuPy / torch CUDA memory)."""
    if _is_numba_device(x):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cuda.as_cuda_array(x)
    raise TypeError(f"{name} is a host array ({type(x).__name__}) but other operands are on "
                    "the GPU; move every operand to the GPU (e.g. numba.cuda.to_device) or "
                    "pass only host numpy arrays (no silent transfers)")


def contiguous(a):
    """``a`` if C-contiguous, else a C-contiguous copy made on the device."""
    if a.is_c_contiguous():
        return a
    out = cuda.device_array(a.shape, dtype=a.dtype)
    tpb = _c.threads_per_block()
    if a.ndim == 1:
        _c.launch(_c.copy_1d, _c.grid_for(a.size, tpb), tpb, a, out)
    elif a.ndim == 2:
        _c.launch(_c.copy_2d, _c.grid_for(a.size, tpb), tpb, a, out)
    else:
        raise ValueError(f"non-contiguous GPU arrays with {a.ndim} dimensions are not "
                         "supported; make the array contiguous first")
    return out


def float_array(x, name, ndim=None, dtype=None, contiguous_=True):
    """The device counterpart of fastnn._validation.float_array (same rules and messages)."""
    a = device(x, name)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {a.dtype} but the other operands are "
                        f"{np.dtype(dtype)}; convert explicitly (no silent promotion)")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {a.shape}")
    return contiguous(a) if contiguous_ else a


def _flat(a):
    return a.reshape(a.size) if a.ndim != 1 else a


def output_array(out, shape, dtype, name="out"):
    if out is None:
        return cuda.device_array(shape, dtype=dtype)
    o = device(out, name)
    if o.dtype != dtype:
        raise TypeError(f"{name} has dtype {o.dtype}, expected {np.dtype(dtype)}")
    if tuple(o.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(o.shape)}")
    if not o.is_c_contiguous():
        raise ValueError(f"{name} must be a writable C-contiguous array")
    return o


def class_labels(target, n_samples, n_classes, name="target", ignore_index=None):
    """Device labels checked on the device; only the first bad index comes back."""
    t = device(target, name)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), got {tuple(t.shape)}")
    t = contiguous(t)
    if n_samples:
        first = cuda.to_device(np.array([n_samples], dtype=np.int64))
        tpb = _c.threads_per_block()
        _c.launch(_c.first_bad_label, _c.grid_for(n_samples, tpb), tpb, t, n_classes,
                  0 if ignore_index is None else ignore_index, ignore_index is not None, first)
        i = int(first.copy_to_host()[0])
        if i < n_samples:
            v = int(t[i:i + 1].copy_to_host()[0])
            raise IndexError(f"{name}[{i}] = {v} is out of range for {n_classes} classes"
                             + (f" (ignore_index={ignore_index})"
                                if ignore_index is not None else ""))
    return t


def _zeros(n, dtype):
    a = cuda.device_array(n, dtype=dtype)
    if n:
        tpb = _c.threads_per_block()
        _c.launch(_c.fill, _c.grid_for(n, tpb), tpb, a, np.dtype(dtype).type(0))
    return a


def _empty(dtype):
    return cuda.device_array(0, dtype=dtype)



def _launch_elementwise(kernel, n, *args):
    tpb = _c.threads_per_block()
    _c.launch(kernel, _c.grid_for((n + 1) // 2, tpb), tpb, *args)


# ------------------------------------------------------------------ linear

def linear(x, weight, bias=None, activation=None, negative_slope=0.01):
    """GPU twin of :func:`fastnn.functional.linear` (device arrays in and out)."""
    x = float_array(x, "x", ndim=2, contiguous_=False)
    weight = float_array(weight, "weight", ndim=2, dtype=x.dtype, contiguous_=False)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape (out, {x.shape[1]}) to match x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    n_out = weight.shape[0]
    if bias is not None:
        bias = float_array(bias, "bias", ndim=1, dtype=x.dtype)
        check_shape(bias, (n_out,), "bias")
    act, slope = _cpu_linear._activation(activation, negative_slope)
    y = cuda.device_array((x.shape[0], n_out), dtype=x.dtype)
    _li.gemm(x, weight.T, y)
    if (bias is None and act == _li.NONE) or y.size == 0:
        return y
    if bias is None:
        bias = _zeros(n_out, x.dtype)
    tpb = _c.threads_per_block()
    _c.launch(_li.bias_activation_, _c.grid_for(y.size, tpb), tpb, y, bias, act,
              x.dtype.type(slope))
    return y


def _column_sums(kernel, a, *args):
    """float64 column sums of the (n, m) ``a`` through ``kernel`` and a merge."""
    n, m = a.shape
    grid, block, n_chunks = _li.column_grid(n, m)
    partial = cuda.device_array((n_chunks, m), dtype=np.float64)
    if n == 0:
        return _zeros(m, np.float64), partial
    _c.launch(kernel, grid, block, *args, partial)
    total = cuda.device_array((1, m), dtype=np.float64)
    g2, b2, _ = _li.column_grid(1, m)
    _c.launch(_li.column_sum, g2, b2, partial, total)
    return total.reshape(m), partial


def _as_dtype(a, dtype):
    if a.dtype == dtype:
        return a
    out = cuda.device_array(a.shape, dtype=dtype)
    if a.size:
        tpb = _c.threads_per_block()
        _c.launch(_c.copy_1d, _c.grid_for(a.size, tpb), tpb, a, out)
    return out


def linear_backward(dy, x, weight, y, activation=None, negative_slope=0.01):
    """GPU twin of :func:`fastnn.functional.linear_backward`."""
    x = float_array(x, "x", ndim=2, contiguous_=False)
    weight = float_array(weight, "weight", ndim=2, dtype=x.dtype, contiguous_=False)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape (out, {x.shape[1]}) to match x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    dtype = x.dtype
    n, n_out = x.shape[0], weight.shape[0]
    dy = float_array(dy, "dy", ndim=2, dtype=dtype, contiguous_=False)
    check_shape(dy, (n, n_out), "dy")
    act, slope = _cpu_linear._activation(activation, negative_slope)
    if y is not None or act != _li.NONE:
        if y is None:
            raise ValueError(f"y (the forward output) is needed for activation {activation!r}")
        y = float_array(y, "y", ndim=2, dtype=dtype, contiguous_=False)
        check_shape(y, (n, n_out), "y")
    if act == _li.NONE:
        dz = dy
        dbias64, _ = _column_sums(_li.column_sum, dy, dy)
    else:
        dz = cuda.device_array((n, n_out), dtype=dtype)
        dbias64, _ = _column_sums(_li.activation_grad_bias_sum, dy, dy, y, act,
                                  dtype.type(slope), dz)
    dbias = _as_dtype(dbias64, dtype)
    dx = cuda.device_array((n, x.shape[1]), dtype=dtype)
    dweight = cuda.device_array((n_out, x.shape[1]), dtype=dtype)
    if n == 0:   # empty batch: zero gradients (a product over an empty axis)
        return dx, _zeros(n_out * x.shape[1], dtype).reshape(n_out, x.shape[1]), dbias
    _li.gemm(dz, weight, dx)
    _li.gemm(dz.T, x, dweight)
    return dx, dweight, dbias


# ------------------------------------------------------------------ batch norm

def _bn_array(a, name, ndim, dtype):
    # The 2-D kernels read any strides; per-column vectors are made contiguous.
    return float_array(a, name, ndim=ndim, dtype=dtype, contiguous_=ndim != 2)


def _bn_running_stat(a, name, c, dtype):
    a = float_array(a, name, ndim=1, dtype=dtype, contiguous_=False)
    check_shape(a, (c,), name)
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous when training (it is updated in place)")
    return a


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, out=None):
    """GPU twin of :func:`fastnn.functional.batch_norm`; mean/invstd are float64 device arrays.

    In training the running statistics, when given, must be C-contiguous
    device arrays of x's dtype; they are updated in place.  ``out``: a
    C-contiguous (N, C) device array of x's dtype for y, sharing no memory
    with the other arguments.
    """
    x, running_mean, running_var, weight, bias, training, momentum, eps, update = \
        _cpu_bn._forward_args(_bn_array, _bn_running_stat, x, running_mean, running_var,
                              weight, bias, training, momentum, eps)
    n, c = x.shape
    dtype = x.dtype
    if running_mean is None:
        running_mean = running_var = _empty(dtype)
    y = output_array(out, (n, c), dtype)
    mean = cuda.device_array(c, dtype=np.float64)
    invstd = cuda.device_array(c, dtype=np.float64)
    w, has_w = (weight, True) if weight is not None else (_empty(dtype), False)
    b, has_b = (bias, True) if bias is not None else (_empty(dtype), False)
    if training:
        _bn.batch_norm_train_forward(x, w, b, has_w, has_b, eps, running_mean, running_var,
                                     update, momentum, y, mean, invstd)
    else:
        _bn.batch_norm_eval_forward(x, running_mean, running_var, w, b, has_w, has_b, eps,
                                    y, mean, invstd)
    return y, mean, invstd


def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True, out=None):
    """GPU twin of :func:`fastnn.functional.batch_norm_backward`.

    ``out``: a C-contiguous (N, C) device array of x's dtype for dx, sharing
    no memory with the other arguments.
    """
    dy, x, mean, invstd, weight, training = _cpu_bn._backward_args(_bn_array, dy, x, mean,
                                                                    invstd, weight, training)
    n, c = x.shape
    dtype = x.dtype
    mean = _as_dtype(mean, np.dtype(np.float64))
    invstd = _as_dtype(invstd, np.dtype(np.float64))
    w, has_w = (weight, True) if weight is not None else (_empty(dtype), False)
    dx = output_array(out, (n, c), dtype)
    dweight = cuda.device_array(c, dtype=dtype)
    dbias = cuda.device_array(c, dtype=dtype)
    kernel = _bn.batch_norm_train_backward if training else _bn.batch_norm_eval_backward
    kernel(dy, x, mean, invstd, w, has_w, dx, dweight, dbias)
    return dx, dweight, dbias


# ------------------------------------------------------------------ dropout

def _dropout_apply(arr, p, seed, out, identity):
    dest = output_array(out, arr.shape, arr.dtype)
    src, dst = _flat(arr), _flat(dest)
    if arr.size == 0:
        return dest
    if identity:
        if src is not dst:
            tpb = _c.threads_per_block()
            _c.launch(_c.copy_1d, _c.grid_for(arr.size, tpb), tpb, src, dst)
        return dest
    scale = arr.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    _launch_elementwise(_do.dropout_scale, arr.size, src, dst, seed_key(seed),
                        _threshold(p), scale)
    return dest


def dropout(x, p=0.5, training=True, seed=0, out=None):
    """GPU twin of :func:`fastnn.functional.dropout`: the CPU's mask, bit for bit."""
    arr = float_array(x, "x")
    p = real_scalar(p, "p", 0.0, 1.0)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {training!r}")
    seed = _seed(seed)
    return _dropout_apply(arr, p, seed, out, not training or p == 0.0)


def dropout_backward(dy, p, seed, out=None):
    """GPU twin of :func:`fastnn.functional.dropout_backward` (regenerates the mask)."""
    arr = float_array(dy, "dy")
    p = real_scalar(p, "p", 0.0, 1.0)
    seed = _seed(seed)
    return _dropout_apply(arr, p, seed, out, p == 0.0)


def dropout_mask(shape, p, seed):
    """The keep-mask of :func:`dropout` as a bool device array (shape, p, seed as the CPU)."""
    shape = shape_tuple(shape)
    p = real_scalar(p, "p", 0.0, 1.0)
    seed = _seed(seed)
    out = cuda.device_array(shape, dtype=np.bool_)
    if out.size:
        _launch_elementwise(_do.dropout_mask, out.size, _flat(out), seed_key(seed),
                            _threshold(p))
    return out


# ------------------------------------------------------------------ softmax / CE

def _softmax(x, axis, log):
    x = float_array(x, "x")
    ax = _cpu_softmax._axis(x, axis, "x")
    shape = tuple(x.shape)
    c = shape[ax]
    out = cuda.device_array(shape, dtype=x.dtype)
    if x.size == 0:
        return out
    if ax == x.ndim - 1:
        rows = x.reshape(x.size // c, c)
        (_sm.log_softmax_rows if log else _sm.softmax_rows)(rows, out.reshape(rows.shape))
    else:
        # (A, C, B) views of the contiguous arrays: no transposition on the device
        n_b = math.prod(shape[ax + 1:])
        x3 = x.reshape(x.size // (c * n_b), c, n_b)
        _sm.softmax_axis(x3, out.reshape(x3.shape), log)
    return out


def softmax(x, axis=-1):
    """GPU twin of :func:`fastnn.functional.softmax` (any axis)."""
    return _softmax(x, axis, log=False)


def log_softmax(x, axis=-1):
    """GPU twin of :func:`fastnn.functional.log_softmax` (any axis)."""
    return _softmax(x, axis, log=True)


def _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, out,
                   with_grad):
    logits = float_array(logits, "logits", ndim=2)
    n, c = logits.shape
    if c == 0:
        raise ValueError(f"logits must have at least one class, got shape {tuple(logits.shape)}")
    ignore_index = integer(ignore_index, "ignore_index", low=-2**63, high=2**63 - 1)
    target = class_labels(target, n, c, "target", ignore_index=ignore_index)
    reduction = check_reduction(reduction)
    smoothing = real_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    if weight is None:
        weight = cuda.to_device(np.ones(c, dtype=logits.dtype))
    else:
        weight = float_array(weight, "weight", ndim=1, dtype=logits.dtype)
        if weight.shape[0] != c:
            raise ValueError(f"weight must have shape ({c},) (one per class), "
                             f"got {tuple(weight.shape)}")
    grad = output_array(out, logits.shape, logits.dtype) if with_grad else \
        cuda.device_array((0, 0), dtype=logits.dtype)
    losses = cuda.device_array(n, dtype=np.float64)
    total = cuda.device_array(2, dtype=np.float64)
    _sm.cross_entropy_rows(logits, target, weight, ignore_index, smoothing,
                           reduction == "mean", losses, grad, with_grad, total)
    if reduction == "none":
        loss = _as_dtype(losses, logits.dtype)
    else:
        loss = float(total.copy_to_host()[0])
    return (loss, grad) if with_grad else loss


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """GPU twin of :func:`fastnn.functional.cross_entropy`."""
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          None, False)


def cross_entropy_with_grad(logits, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, out=None):
    """GPU twin of :func:`fastnn.functional.cross_entropy_with_grad` (``out`` may be logits)."""
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          out, True)


# ------------------------------------------------------------------ hinge / MSE / MAE

def _hinge(scores, target, margin, reduction, with_grad, out=None):
    s = float_array(scores, "scores", ndim=2)
    n, n_classes = s.shape
    y = class_labels(target, n, n_classes)
    margin = real_scalar(margin, "margin")
    if math.isinf(margin):
        raise ValueError("margin must be finite, got inf")
    check_reduction(reduction)
    gscale = 1.0 / n if (reduction == "mean" and n) else 1.0
    row_loss = cuda.device_array(n, dtype=np.float64)
    grad = output_array(out, s.shape, s.dtype) if with_grad else \
        cuda.device_array((n, 0), dtype=s.dtype)
    if n:
        _lo.hinge(s, y, margin, gscale, row_loss, grad, with_grad)
    if reduction == "none":
        loss = _as_dtype(row_loss, s.dtype)
    else:
        total = _sum(row_loss)
        loss = total if reduction == "sum" else _mean(total, n)
    return (loss, grad) if with_grad else loss


def _sum(a):
    out = cuda.device_array(1, dtype=np.float64)
    _c.launch(_c.sum_1d, 1, _c.threads_per_block(), a, out, 0)
    return float(out.copy_to_host()[0])


def hinge_loss(scores, target, margin=1.0, reduction="mean"):
    """GPU twin of :func:`fastnn.functional.hinge_loss`."""
    return _hinge(scores, target, margin, reduction, False)


def hinge_loss_with_grad(scores, target, margin=1.0, reduction="mean", out=None):
    """GPU twin of :func:`fastnn.functional.hinge_loss_with_grad`."""
    return _hinge(scores, target, margin, reduction, True, out)


def _regression(sum_kernel, none_kernel, grad_factor, pred, target, reduction, with_grad,
                out=None):
    p = float_array(pred, "pred")
    t = float_array(target, "target", dtype=p.dtype)
    check_shape(t, p.shape, "target")
    check_reduction(reduction)
    n = p.size
    grad = output_array(out, p.shape, p.dtype) if with_grad else \
        cuda.device_array(0, dtype=p.dtype)
    flat_p, flat_t = _flat(p), _flat(t)
    flat_g = _flat(grad) if with_grad else grad
    if reduction == "none":
        loss = cuda.device_array(p.shape, dtype=p.dtype)
        if n:
            none_kernel(flat_p, flat_t, _flat(loss), flat_g, with_grad)
    else:
        gscale = grad_factor / n if (reduction == "mean" and n) else grad_factor
        total_dev = cuda.device_array(1, dtype=np.float64)
        sum_kernel(flat_p, flat_t, flat_g, gscale, with_grad, total_dev)
        total = float(total_dev.copy_to_host()[0])
        loss = total if reduction == "sum" else _mean(total, n)
    return (loss, grad) if with_grad else loss


def mse_loss(pred, target, reduction="mean"):
    """GPU twin of :func:`fastnn.functional.mse_loss`."""
    return _regression(_lo.mse_sum, _lo.mse_none, 2.0, pred, target, reduction, False)


def mse_loss_with_grad(pred, target, reduction="mean", out=None):
    """GPU twin of :func:`fastnn.functional.mse_loss_with_grad`."""
    return _regression(_lo.mse_sum, _lo.mse_none, 2.0, pred, target, reduction, True, out)


def l1_loss(pred, target, reduction="mean"):
    """GPU twin of :func:`fastnn.functional.l1_loss`."""
    return _regression(_lo.l1_sum, _lo.l1_none, 1.0, pred, target, reduction, False)


def l1_loss_with_grad(pred, target, reduction="mean", out=None):
    """GPU twin of :func:`fastnn.functional.l1_loss_with_grad`."""
    return _regression(_lo.l1_sum, _lo.l1_none, 1.0, pred, target, reduction, True, out)


# ------------------------------------------------------------------ regularization

def _penalty(kernel, w, lam, out):
    arr = float_array(w, "w")
    lam = _lam(lam)
    grad = output_array(out, arr.shape, arr.dtype)
    total = cuda.device_array(1, dtype=np.float64)
    kernel(_flat(arr), _flat(grad), lam, total)
    return lam * float(total.copy_to_host()[0]), grad


def l2_penalty(w, lam, out=None):
    """GPU twin of :func:`fastnn.functional.l2_penalty`: (lam sum(w^2), 2 lam w)."""
    return _penalty(_re.l2_penalty, w, lam, out)


def l1_penalty(w, lam, out=None):
    """GPU twin of :func:`fastnn.functional.l1_penalty`: (lam sum|w|, lam sign(w))."""
    return _penalty(_re.l1_penalty, w, lam, out)


def max_norm_(weight, c):
    """GPU twin of :func:`fastnn.functional.max_norm_` (in place, any strides)."""
    w = device(weight, "weight")
    if w.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weight must be float32 or float64, got dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"weight must have 2 dimensions (out, in), got shape {tuple(w.shape)}")
    c = real_scalar(c, "c", low=0.0, low_open=True)
    _re.max_norm(w, c)
    return weight

