"""The CUDA backend: device allocation, device operand rules and the CUDA launchers.

The twin of :mod:`fastnn._cpu.backend`: the same names with the same
signatures, so :mod:`fastnn.functional` validates once and ends in
``backend_of(...).<op>(...)`` for either device.  Imported by
:func:`fastnn._backend.backend_of` only when a GPU array (anything with
``__cuda_array_interface__``, or a simulator array) reaches a public
function, so ``import fastnn`` needs no numba-cuda.

Arrays come back as numba device arrays (wrap them with ``cupy.asarray`` or
``torch.as_tensor`` for free).  Every array operand must be on the GPU: a
host array among device arrays is a TypeError, never a silent transfer.  The
2-D kernels read any strides; other non-contiguous inputs are copied on the
device first.  Each launcher picks its grid.  The launchers for
:mod:`fastnn.nn` (activations, gradient sums) and :mod:`fastnn.optim`
(``zeros_like``, ``sgd_step``, ``adam_step``, from :mod:`fastnn._cuda.optim`)
are here too.
"""
import math

import numpy as np

from fastnn._cuda import require_cuda

cuda = require_cuda()   # a clear RuntimeError here when no CUDA device is usable

from fastnn._cpu.linear import NONE
from fastnn._cpu.rng import seed_key
from fastnn._cuda import (
    _common as _c,
    activations as _ac,
    batchnorm as _bn,
    dropout as _do,
    layernorm as _ln,
    linear as _li,
    losses as _lo,
    regularization as _re,
    softmax as _sm,
)
from fastnn._cuda.optim import adam_step, sgd_step, zeros_like
from fastnn._validation import FLOAT_DTYPES, check_output, check_shape

__all__ = ["NAME", "empty", "zeros", "copy", "copyto", "astype", "to_host", "from_host",
           "float_array", "class_labels", "output_array", "running_stat", "inplace_array",
           "is_writeable", "linear", "linear_backward", "batch_norm_train", "batch_norm_eval",
           "batch_norm_backward", "dropout", "dropout_mask", "softmax", "cross_entropy",
           "hinge", "sum", "mse_sum", "mse_none", "l1_sum", "l1_none", "l2_penalty",
           "l1_penalty", "max_norm_", "first_outside_unit", "bce_sum", "bce_none",
           "activation", "activation_grad", "accumulate_", "zeros_like", "sgd_step",
           "adam_step", "layer_norm", "layer_norm_backward"]

NAME = "cuda"


# ------------------------------------------------------------------ allocation

def empty(shape, dtype):
    """A new C-contiguous device array (uninitialized)."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def _fill_zero(a):
    if a.size:
        tpb = _c.threads_per_block()
        _c.launch(_c.fill, _c.grid_for(a.size, tpb), tpb, _flat(a), a.dtype.type(0))
    return a


def zeros(shape, dtype):
    """A new zeroed C-contiguous device array (one fill kernel, no host copy)."""
    return _fill_zero(empty(shape, dtype))


def copyto(dst, src):
    """``dst[...] = src`` on the device (``dst`` C-contiguous; ``src`` C-contiguous, or 1-D/2-D)."""
    if dst is src or src.size == 0:
        return
    tpb = _c.threads_per_block()
    if src.ndim == 2 and not src.is_c_contiguous():
        _c.launch(_c.copy_2d, _c.grid_for(src.size, tpb), tpb, src, dst)
    else:   # 1-D in any strides, or C-contiguous: flat views
        _c.launch(_c.copy_1d, _c.grid_for(src.size, tpb), tpb, _flat(src), _flat(dst))


def copy(a):
    """A C-contiguous device copy of the device array ``a``."""
    out = empty(a.shape, a.dtype)
    copyto(out, a)
    return out


def astype(a, dtype):
    """``a`` itself if it has ``dtype``, else a converted device copy (1-D ``a``)."""
    if a.dtype == dtype:
        return a
    out = empty(a.shape, dtype)
    if a.size:
        tpb = _c.threads_per_block()
        _c.launch(_c.copy_1d, _c.grid_for(a.size, tpb), tpb, a, out)
    return out


def to_host(a):
    """A host numpy copy of the device array ``a``."""
    return a.copy_to_host()


def from_host(a):
    """A device copy of the host array ``a`` (C-contiguous)."""
    return cuda.to_device(np.ascontiguousarray(a))


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


def as_contiguous(a):
    """``a`` if C-contiguous, else a C-contiguous copy made on the device."""
    if a.is_c_contiguous():
        return a
    if a.ndim not in (1, 2):
        raise ValueError(f"non-contiguous GPU arrays with {a.ndim} dimensions are not "
                         "supported; make the array contiguous first")
    out = empty(a.shape, a.dtype)
    copyto(out, a)
    return out


def _flat(a):
    return a.reshape(a.size) if a.ndim != 1 else a


def float_array(x, name, ndim=None, dtype=None, contiguous=True):
    """The device counterpart of :func:`fastnn._validation.float_array` (same rules, messages)."""
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
    return as_contiguous(a) if contiguous else a


def is_writeable(a):
    """Whether the kernels may write into ``a``: the interface's read-only flag.

    numba's simulator arrays have no interface; they wrap a host array,
    whose flag stands for theirs.
    """
    iface = getattr(a, "__cuda_array_interface__", None)
    if iface is not None:
        return not iface["data"][1]
    flags = getattr(a, "flags", None)
    return flags is None or bool(flags.writeable)


def output_array(out, shape, dtype, inputs=(), inplace_ok=True):
    """A new device array, or ``out`` checked as :func:`fastnn._validation.output_array`."""
    if out is None:
        return empty(shape, dtype)
    o = device(out, "out")
    check_output(o, shape, dtype, o.is_c_contiguous() and is_writeable(out), inputs,
                 inplace_ok)
    return o


def class_labels(target, n_samples, n_classes, name="target", ignore_index=None):
    """Device labels checked on the device; only the first bad index comes back."""
    t = device(target, name)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), got {tuple(t.shape)}")
    t = as_contiguous(t)
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


def running_stat(a, name, c, dtype):
    """A running statistic that training updates in place (a C-contiguous device array)."""
    raw = a   # the caller's object: a CuPy/torch read-only flag is on it, not on the view
    a = float_array(a, name, ndim=1, dtype=dtype, contiguous=False)
    check_shape(a, (c,), name)
    if not is_writeable(raw):
        raise ValueError(f"{name} is read-only, but training updates it in place")
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous when training (it is updated in "
                         "place); pass np.ascontiguousarray(...) and keep that array")
    return a


def inplace_array(a, name, why):
    """``a`` as a device array for a function that modifies it in place."""
    return device(a, name)


# ------------------------------------------------------------------ linear

def linear(x, weight, bias, act, slope, y):
    """y = act(x @ weight.T + bias) into ``y``; ``bias`` may be None."""
    _li.gemm(x, weight.T, y)
    if (bias is None and act == NONE) or y.size == 0:
        return
    if bias is None:
        bias = zeros(y.shape[1], y.dtype)
    tpb = _c.threads_per_block()
    _c.launch(_li.bias_activation_, _c.grid_for(y.size, tpb), tpb, y, bias, act,
              y.dtype.type(slope))


def _column_sums(kernel, a, *args):
    """float64 column sums of the (n, m) ``a`` through ``kernel`` and a merge."""
    n, m = a.shape
    grid, block, n_chunks = _li.column_grid(n, m)
    partial = empty((n_chunks, m), np.float64)
    if n == 0:
        return zeros(m, np.float64)
    _c.launch(kernel, grid, block, *args, partial)
    total = empty((1, m), np.float64)
    g2, b2, _ = _li.column_grid(1, m)
    _c.launch(_li.column_sum, g2, b2, partial, total)
    return total.reshape(m)


def linear_backward(dy, x, weight, y, act, slope, dx, dweight):
    """dx and dweight written into the given arrays; returns dbias (x's dtype)."""
    dtype = dx.dtype
    if act == NONE:
        dz = dy
        dbias64 = _column_sums(_li.column_sum, dy, dy)
    else:
        dz = empty(dy.shape, dtype)
        dbias64 = _column_sums(_li.activation_grad_bias_sum, dy, dy, y, act,
                               dtype.type(slope), dz)
    if dy.shape[0] == 0:   # empty batch: zero gradients (a product over an empty axis)
        _fill_zero(dweight)
    else:
        _li.gemm(dz, weight, dx)
        _li.gemm(dz.T, x, dweight)
    return astype(dbias64, dtype)


# ------------------------------------------------------------------ batch norm

def _or_empty(a, dtype):
    return (a, True) if a is not None else (empty(0, dtype), False)


def batch_norm_train(x, weight, bias, eps, running_mean, running_var, update, momentum,
                     y, mean, invstd):
    """Training forward: y, mean, invstd written; running stats updated when ``update``."""
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    if running_mean is None:
        running_mean = running_var = empty(0, x.dtype)
    _bn.batch_norm_train_forward(x, w, b, has_w, has_b, eps, running_mean, running_var,
                                 update, momentum, y, mean, invstd)


def batch_norm_eval(x, running_mean, running_var, weight, bias, eps, y, mean, invstd):
    """Eval forward with the running statistics: y, mean, invstd written."""
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    _bn.batch_norm_eval_forward(x, running_mean, running_var, w, b, has_w, has_b, eps,
                                y, mean, invstd)


def batch_norm_backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias):
    """dx, dweight, dbias written; ``mean``/``invstd`` may be float64 or x's dtype."""
    mean = astype(mean, np.dtype(np.float64))
    invstd = astype(invstd, np.dtype(np.float64))
    w, has_w = _or_empty(weight, x.dtype)
    kernel = _bn.batch_norm_train_backward if training else _bn.batch_norm_eval_backward
    kernel(dy, x, mean, invstd, w, has_w, dx, dweight, dbias)


# ------------------------------------------------------------------ layer norm
# fastnn.functional flattens x to C-contiguous (M, D) rows before these.

def layer_norm(x, weight, bias, eps, y, mean, invstd):
    """Forward over the rows of the (M, D) ``x``: y, per-row mean and invstd written."""
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    _ln.layer_norm_forward(x, w, b, has_w, has_b, eps, y, mean, invstd)


def layer_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """dx, dweight, dbias written; ``mean``/``invstd`` may be float64 or x's dtype."""
    mean = astype(mean, np.dtype(np.float64))
    invstd = astype(invstd, np.dtype(np.float64))
    w, has_w = _or_empty(weight, x.dtype)
    _ln.layer_norm_backward(dy, x, mean, invstd, w, has_w, dx, dweight, dbias)


# ------------------------------------------------------------------ dropout

def _launch_elementwise(kernel, n, *args):
    # two elements per thread
    tpb = _c.threads_per_block()
    _c.launch(kernel, _c.grid_for((n + 1) // 2, tpb), tpb, *args)


def dropout(src, dst, seed, threshold, scale):
    """dst = src * keep(seed, i) * scale over the flat C order (both C-contiguous)."""
    if src.size:
        _launch_elementwise(_do.dropout_scale, src.size, _flat(src), _flat(dst),
                            seed_key(seed), threshold, scale)


def dropout_mask(out, seed, threshold):
    """The keep-mask of :func:`dropout` into the bool device array ``out``."""
    if out.size:
        _launch_elementwise(_do.dropout_mask, out.size, _flat(out), seed_key(seed), threshold)


# ------------------------------------------------------------------ softmax / CE

def softmax(x, axis, log, out):
    """(log-)softmax of ``x`` along ``axis`` into the C-contiguous ``out``."""
    x = as_contiguous(x)
    if x.size == 0:
        return
    shape = tuple(x.shape)
    c = shape[axis]
    if axis == x.ndim - 1:
        rows = x.reshape(x.size // c, c)
        (_sm.log_softmax_rows if log else _sm.softmax_rows)(rows, out.reshape(rows.shape))
    else:
        # (A, C, B) views of the contiguous arrays: no transposition on the device
        n_b = math.prod(shape[axis + 1:])
        x3 = x.reshape(x.size // (c * n_b), c, n_b)
        _sm.softmax_axis(x3, out.reshape(x3.shape), log)


def cross_entropy(logits, target, weight, ignore_index, smoothing, mean, losses, grad,
                  with_grad):
    """Row losses into ``losses`` (float64), the gradient into ``grad``; returns the total."""
    if weight is None:
        weight = from_host(np.ones(logits.shape[1], dtype=logits.dtype))
    total = empty(2, np.float64)
    _sm.cross_entropy_rows(logits, target, weight, ignore_index, smoothing, mean, losses,
                           grad, with_grad, total)
    return float(total.copy_to_host()[0])


# ------------------------------------------------------------------ losses

def hinge(scores, target, margin, gscale, row_loss, grad, with_grad):
    """Per-row hinge losses into ``row_loss`` (float64) and the gradient into ``grad``."""
    if scores.shape[0]:
        _lo.hinge(scores, target, margin, gscale, row_loss, grad, with_grad)


def sum(a):
    """The sum of the 1-D float64 device array ``a``, as a Python float."""
    out = empty(1, np.float64)
    _c.launch(_c.sum_1d, 1, _c.threads_per_block(), a, out, 0)
    return float(out.copy_to_host()[0])


def _regression_sum(kernel, pred, target, grad, gscale, with_grad):
    total = empty(1, np.float64)
    kernel(_flat(pred), _flat(target), _flat(grad), gscale, with_grad, total)
    return float(total.copy_to_host()[0])


def mse_sum(pred, target, grad, gscale, with_grad):
    """sum (pred - target)^2 (float64); gradient 2 gscale (pred - target) into ``grad``."""
    return _regression_sum(_lo.mse_sum, pred, target, grad, gscale, with_grad)


def l1_sum(pred, target, grad, gscale, with_grad):
    """sum |pred - target| (float64); gradient gscale sign(pred - target) into ``grad``."""
    return _regression_sum(_lo.l1_sum, pred, target, grad, gscale, with_grad)


def mse_none(pred, target, loss, grad, with_grad):
    """Elementwise squared errors into ``loss`` (and their gradient into ``grad``)."""
    if pred.size:
        _lo.mse_none(_flat(pred), _flat(target), _flat(loss), _flat(grad), with_grad)


def l1_none(pred, target, loss, grad, with_grad):
    """Elementwise absolute errors into ``loss`` (and their subgradient into ``grad``)."""
    if pred.size:
        _lo.l1_none(_flat(pred), _flat(target), _flat(loss), _flat(grad), with_grad)


def first_outside_unit(a):
    """(flat C-order index, value) of the first element of the C-contiguous device array
    ``a`` outside [0, 1] (NaN included), or None; only that element comes to the host."""
    if a.size == 0:
        return None
    flat = _flat(a)
    first = cuda.to_device(np.array([a.size], dtype=np.int64))
    tpb = _c.threads_per_block()
    _c.launch(_lo.first_outside_unit, _c.grid_for(a.size, tpb), tpb, flat, first)
    i = int(first.copy_to_host()[0])
    return (i, float(flat[i:i + 1].copy_to_host()[0])) if i < a.size else None


def bce_sum(pred, target, grad, gscale, with_grad):
    """sum of the BCE-with-logits terms (float64); gscale (sigmoid(pred) - target) into ``grad``."""
    return _regression_sum(_lo.bce_sum, pred, target, grad, gscale, with_grad)


def bce_none(pred, target, loss, grad, with_grad):
    """Elementwise BCE-with-logits terms into ``loss`` (sigmoid(pred) - target into ``grad``)."""
    if pred.size:
        _lo.bce_none(_flat(pred), _flat(target), _flat(loss), _flat(grad), with_grad)


# ------------------------------------------------------------------ regularization

def _penalty(kernel, w, grad, lam):
    total = empty(1, np.float64)
    kernel(_flat(w), _flat(grad), lam, total)
    return float(total.copy_to_host()[0])


def l2_penalty(w, grad, lam):
    """sum w^2 (float64), and 2 lam w into ``grad``."""
    return _penalty(_re.l2_penalty, w, grad, lam)


def l1_penalty(w, grad, lam):
    """sum |w| (float64), and lam sign(w) into ``grad``."""
    return _penalty(_re.l1_penalty, w, grad, lam)


def max_norm_(weight, c):
    """Rows of ``weight`` (any strides) with norm above ``c`` rescaled in place."""
    _re.max_norm(weight, c)


# ------------------------------------------------------------------ activation layers

def _launch_flat(kernel, n, *args):
    # one element per thread
    if n:
        tpb = _c.threads_per_block()
        _c.launch(kernel, _c.grid_for(n, tpb), tpb, *args)


def activation(x, act, slope, out):
    """out = act(x) elementwise (``x`` 1-D/2-D in any strides or C-contiguous; ``out`` C)."""
    _launch_flat(_ac.activation_forward, x.size, _flat(as_contiguous(x)), _flat(out), act,
                 x.dtype.type(slope))


def activation_grad(dy, y, act, slope, dx):
    """dx = dy * act'(x) from the forward output ``y`` (device arrays of one shape)."""
    _launch_flat(_ac.activation_backward, y.size, _flat(as_contiguous(dy)),
                 _flat(as_contiguous(y)), act, y.dtype.type(slope), _flat(dx))


def accumulate_(grad, g):
    """In place: grad += g (device arrays of one shape; ``g`` is checked here)."""
    g = float_array(g, "g", dtype=grad.dtype)
    check_shape(g, tuple(grad.shape), "g")
    _launch_flat(_ac.add_, grad.size, _flat(grad), _flat(g))
    return grad
