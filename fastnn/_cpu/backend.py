"""The CPU backend: host allocation, host operand rules and the CPU launchers.

:func:`fastnn._backend.backend_of` returns this module for host arrays; the
CUDA backend, :mod:`fastnn._cuda.backend`, has the same names with the same
signatures.  :mod:`fastnn.functional` validates every argument first and
allocates the outputs with :func:`empty`, then calls one launcher here, so
nothing below re-checks anything.  Each launcher picks the serial or the
parallel twin of its kernel (``DualKernel.pick`` / ``pick_chunks``) and the
row chunking; the CUDA launchers pick the grid instead.
"""
import functools

import numpy as np

from fastnn import memory
from fastnn._cpu import (
    activations as _ac,
    batchnorm as _bn,
    dropout as _do,
    layernorm as _ln,
    linear as _li,
    losses as _lo,
    optim as _op,
    regularization as _re,
    softmax as _sm,
)
from fastnn._cpu.rng import seed_key
from fastnn._validation import (
    check_shape,
    class_labels,
    float_array,
    output_array,
)

__all__ = ["NAME", "empty", "zeros", "copy", "copyto", "astype", "to_host", "from_host",
           "float_array", "class_labels", "output_array", "running_stat", "inplace_array",
           "is_writeable", "linear", "linear_backward", "batch_norm_train", "batch_norm_eval",
           "batch_norm_backward", "dropout", "dropout_mask", "softmax", "cross_entropy",
           "hinge", "sum", "mse_sum", "mse_none", "l1_sum", "l1_none", "l2_penalty",
           "l1_penalty", "max_norm_", "first_outside_unit", "bce_sum", "bce_none",
           "activation", "activation_grad", "accumulate_", "zeros_like", "sgd_step",
           "adam_step", "layer_norm", "layer_norm_backward"]

NAME = "cpu"

# Row chunks per thread in the parallel twins: a few, so that one slow
# (shared) core does not hold the rest up.
_CHUNKS_PER_THREAD = 4

# Stand-ins for an absent weight/bias/running stat: the kernels take a flag
# and never read them, and a shared empty array costs no allocation per call.
_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}


# ------------------------------------------------------------------ allocation

empty = memory.empty


def zeros(shape, dtype):
    """A new zeroed C-contiguous host array."""
    return np.zeros(shape, dtype=dtype)


def copy(a):
    """A C-contiguous host copy of the host array ``a``."""
    return np.array(a, order="C", copy=True)


def copyto(dst, src):
    """``dst[...] = src`` (same shape)."""
    np.copyto(dst, src)


def astype(a, dtype):
    """``a`` itself if it has ``dtype``, else a converted copy."""
    return a if a.dtype == dtype else a.astype(dtype)


def to_host(a):
    """The host array ``a`` itself (it is on the host already)."""
    return a


def from_host(a):
    """The host array ``a`` as a C-contiguous ndarray (no copy when it is one)."""
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------ operands
# float_array, class_labels and output_array are fastnn._validation's host rules.

def running_stat(a, name, c, dtype):
    """A running statistic that training updates in place: the caller's own
    writeable, C-contiguous ndarray (a silent copy would drop the update)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy ndarray when training (it is updated in "
                        f"place), got {type(a).__name__}")
    float_array(a, name, ndim=1, dtype=dtype, contiguous=False)
    check_shape(a, (c,), name)
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only, but training updates it in place")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous when training (it is updated in "
                         "place); pass np.ascontiguousarray(...) and keep that array")
    return a


def inplace_array(a, name, why):
    """``a`` itself for a function that modifies it in place: it must be an ndarray."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy ndarray ({why}), got {type(a).__name__}")
    return a


def is_writeable(a):
    """Whether the kernels may write into ``a``."""
    return bool(a.flags.writeable)


def _c(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _blas_operand(a):
    """``a`` itself when the BLAS can read it in place (C or Fortran order), else a C copy.

    numpy's matmul hands either order to the BLAS as a transpose flag, but
    falls back to a naive loop for other strides.
    """
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)


# ------------------------------------------------------------------ linear
# The fused passes run the SERIAL twin at every size, by measurement: they
# always follow a BLAS call, and OpenBLAS's worker thread keeps spinning for up
# to ~0.1 s after returning, so a numba parallel region has to fight it for
# the second core.  Epilogue of a 4096 x 1024 float32 output right after
# sgemm (2-core machine under load, medians of 3 interleaved runs): serial 1.1 ms, parallel
# 35 ms (7.4 ms with OMP_WAIT_POLICY=PASSIVE, best case 1.0 ms); at 256 x 1024:
# serial 0.10 ms, parallel 33 ms (0.16 ms passive).  Serial costs ~2% of the
# products at these sizes.  The parallel twins stay tested, so switching to
# ``.pick(n)`` is a one-word change if the BLAS ever stops spinning.

@functools.lru_cache(maxsize=1)
def _compiled_products():
    """Whether the products run through :mod:`fastnn._cpu.linear`'s compiled routine.

    That routine is the compiled engine's, on scipy's BLAS (what numba calls
    ``np.dot`` with): with it both executors get the same bits.  Without scipy
    (not a requirement of fastnn) there is no engine to agree with, and
    numpy's own BLAS does the products.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        return False
    return True


def _operand(a):
    """A BLAS operand: C or Fortran order (else a C copy), of exact type ndarray
    (numba types no subclass such as np.matrix or np.memmap; a view is free)."""
    a = _blas_operand(a)
    return a if type(a) is np.ndarray else a.view(np.ndarray)


def linear(x, weight, bias, act, slope, y):
    """y = act(x @ weight.T + bias) into ``y``; ``bias`` may be None."""
    x, weight = _operand(x), _operand(weight)
    if _compiled_products():
        _li.matmul_xwt(x, weight, y)
    else:
        np.matmul(x, weight.T, out=y)
    if bias is None and act == _li.NONE:
        return
    if bias is None:
        bias = np.zeros(y.shape[1], dtype=y.dtype)
    _li.bias_activation_.serial(y, bias, act, y.dtype.type(slope))


def linear_backward(dy, x, weight, y, act, slope, dx, dweight):
    """dx and dweight written into the given arrays; returns dbias (x's dtype)."""
    dtype = dx.dtype
    dy = _c(dy)
    # The kernels sum dz in float64, one row of partial sums per chunk of rows;
    # the serial twin has a single chunk, so its row is the sum.
    partial = np.zeros((1, dy.shape[1]))
    if act == _li.NONE:
        dz = dy if type(dy) is np.ndarray else dy.view(np.ndarray)
        _li.column_sum.serial(dz, partial)
    else:
        dz = memory.empty(dy.shape, dtype)
        _li.activation_grad_bias_sum.serial(dy, _c(y), act, dtype.type(slope), dz, partial)
    x, weight = _operand(x), _operand(weight)
    if _compiled_products():
        _li.matmul_gw(dz, weight, dx)
        _li.matmul_gtx(dz, x, dweight)
    else:
        np.matmul(dz, weight, out=dx)
        np.matmul(dz.T, x, out=dweight)
    return partial[0].astype(dtype)


# ------------------------------------------------------------------ batch norm

def _or_empty(a, dtype):
    return (a, True) if a is not None else (_EMPTY[dtype], False)


def batch_norm_train(x, weight, bias, eps, running_mean, running_var, update, momentum,
                     y, mean, invstd):
    """Training forward: y, mean, invstd written; running stats updated when ``update``."""
    x = _c(x)
    n, c = x.shape
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    if running_mean is None:
        running_mean = running_var = _EMPTY[x.dtype]
    kernel, n_chunks = _bn.batch_norm_train_forward.pick_chunks(n * c)
    kernel(x, w, b, has_w, has_b, eps, n_chunks, running_mean, running_var, update, momentum,
           y, mean, invstd)


def batch_norm_eval(x, running_mean, running_var, weight, bias, eps, y, mean, invstd):
    """Eval forward with the running statistics: y, mean, invstd written."""
    x = _c(x)
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    kernel = _bn.batch_norm_eval_forward.pick(x.size)
    kernel(x, running_mean, running_var, w, b, has_w, has_b, eps, y, mean, invstd)


def batch_norm_backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias):
    """dx, dweight, dbias written; ``mean``/``invstd`` may be float64 or x's dtype."""
    dy, x = _c(dy), _c(x)
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    invstd = np.ascontiguousarray(invstd, dtype=np.float64)
    w, has_w = _or_empty(weight, x.dtype)
    dual = _bn.batch_norm_train_backward if training else _bn.batch_norm_eval_backward
    kernel, n_chunks = dual.pick_chunks(x.size)
    kernel(dy, x, mean, invstd, w, has_w, n_chunks, dx, dweight, dbias)


# ------------------------------------------------------------------ layer norm
# fastnn.functional flattens x to C-contiguous (M, D) rows before these.

def layer_norm(x, weight, bias, eps, y, mean, invstd):
    """Forward over the rows of the (M, D) ``x``: y, per-row mean and invstd written."""
    w, has_w = _or_empty(weight, x.dtype)
    b, has_b = _or_empty(bias, x.dtype)
    _ln.layer_norm_forward.pick(x.size)(x, w, b, has_w, has_b, eps, y, mean, invstd)


def layer_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """dx, dweight, dbias written; ``mean``/``invstd`` may be float64 or x's dtype."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    invstd = np.ascontiguousarray(invstd, dtype=np.float64)
    w, has_w = _or_empty(weight, x.dtype)
    kernel, n_chunks = _ln.layer_norm_backward.pick_chunks(x.size)
    kernel(dy, x, mean, invstd, w, has_w, n_chunks, dx, dweight, dbias)


# ------------------------------------------------------------------ dropout

def dropout(src, dst, seed, threshold, scale):
    """dst = src * keep(seed, i) * scale over the flat C order (both C-contiguous)."""
    kernel, n_chunks = _do.dropout_scale.pick_chunks(src.size, _CHUNKS_PER_THREAD)
    kernel(src.ravel(), dst.ravel(), seed_key(seed), threshold, scale, n_chunks)


def dropout_mask(out, seed, threshold):
    """The keep-mask of :func:`dropout` into the bool array ``out``."""
    kernel, n_chunks = _do.dropout_mask.pick_chunks(out.size, _CHUNKS_PER_THREAD)
    kernel(out.ravel(), seed_key(seed), threshold, n_chunks)


# ------------------------------------------------------------------ softmax / CE

def softmax(x, axis, log, out):
    """(log-)softmax of ``x`` along ``axis`` into the C-contiguous ``out``."""
    kernel = _sm.log_softmax_rows if log else _sm.softmax_rows
    c = x.shape[axis]
    if axis == x.ndim - 1:
        # The usual case needs no transposition (np.moveaxis costs ~3 us per
        # call, more than the kernel on a small batch).
        rows = _c(x).reshape(x.size // c if c else 0, c)
        if rows.size:
            kernel.pick(rows.size)(rows, out.reshape(rows.shape))
        return
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    rows = moved.reshape(moved.size // c if c else 0, c)
    tmp = memory.empty(rows.shape, rows.dtype)
    if rows.size:
        kernel.pick(rows.size)(rows, tmp)
    np.copyto(out, np.moveaxis(tmp.reshape(moved.shape), -1, axis))


@functools.lru_cache(maxsize=16)
def _unit_weights(c, dtype):
    # The default class weights, kept: np.ones costs ~1 us a call.  Private
    # and only ever read by the kernel.
    return np.ones(c, dtype=dtype)


def cross_entropy(logits, target, weight, ignore_index, smoothing, mean, losses, grad,
                  with_grad):
    """Row losses into ``losses`` (float64), the gradient into ``grad``; returns the total."""
    if weight is None:
        weight = _unit_weights(logits.shape[1], logits.dtype)
    kernel = _sm.cross_entropy_rows.pick(logits.size)
    return float(kernel(logits, target, weight, ignore_index, smoothing, mean, losses, grad,
                        with_grad))


# ------------------------------------------------------------------ losses

def hinge(scores, target, margin, gscale, row_loss, grad, with_grad):
    """Per-row hinge losses into ``row_loss`` (float64) and the gradient into ``grad``."""
    _lo.hinge.pick(scores.size)(scores, target, margin, gscale, row_loss, grad, with_grad)


def sum(a):
    """The sum of the 1-D float64 array ``a``, as a Python float (the compiled engine's sum)."""
    return float(_lo.total(a))


def _regression_sum(dual, pred, target, grad, gscale, with_grad):
    kernel, n_chunks = dual.pick_chunks(pred.size, _CHUNKS_PER_THREAD)
    # C-contiguous arrays: ravel() returns views.
    return float(kernel(pred.ravel(), target.ravel(), grad.ravel(), gscale, with_grad,
                        n_chunks))


def _regression_none(dual, pred, target, loss, grad, with_grad):
    kernel, n_chunks = dual.pick_chunks(pred.size, _CHUNKS_PER_THREAD)
    kernel(pred.ravel(), target.ravel(), loss.ravel(), grad.ravel(), with_grad, n_chunks)


def mse_sum(pred, target, grad, gscale, with_grad):
    """sum (pred - target)^2 (float64); gradient 2 gscale (pred - target) into ``grad``."""
    return _regression_sum(_lo.mse_sum, pred, target, grad, gscale, with_grad)


def l1_sum(pred, target, grad, gscale, with_grad):
    """sum |pred - target| (float64); gradient gscale sign(pred - target) into ``grad``."""
    return _regression_sum(_lo.l1_sum, pred, target, grad, gscale, with_grad)


def mse_none(pred, target, loss, grad, with_grad):
    """Elementwise squared errors into ``loss`` (and their gradient into ``grad``)."""
    _regression_none(_lo.mse_none, pred, target, loss, grad, with_grad)


def l1_none(pred, target, loss, grad, with_grad):
    """Elementwise absolute errors into ``loss`` (and their subgradient into ``grad``)."""
    _regression_none(_lo.l1_none, pred, target, loss, grad, with_grad)


def first_outside_unit(a):
    """(flat C-order index, value) of the first element of the C-contiguous ``a`` outside
    [0, 1] (NaN included), or None when every element is in [0, 1]."""
    flat = a.ravel()
    bad = np.flatnonzero(~((flat >= 0) & (flat <= 1)))
    return (int(bad[0]), float(flat[bad[0]])) if bad.size else None


def bce_sum(pred, target, grad, gscale, with_grad):
    """sum of the BCE-with-logits terms (float64); gscale (sigmoid(pred) - target) into ``grad``."""
    return _regression_sum(_lo.bce_sum, pred, target, grad, gscale, with_grad)


def bce_none(pred, target, loss, grad, with_grad):
    """Elementwise BCE-with-logits terms into ``loss`` (sigmoid(pred) - target into ``grad``)."""
    _regression_none(_lo.bce_none, pred, target, loss, grad, with_grad)


# ------------------------------------------------------------------ regularization

def _penalty(dual, w, grad, lam):
    twin, n_chunks = dual.pick_chunks(w.size, _CHUNKS_PER_THREAD)
    # ravel() of these C-contiguous arrays is a view (0.07 us; reshape(-1): 0.18).
    return float(twin(w.ravel(), grad.ravel(), lam, n_chunks))


def l2_penalty(w, grad, lam):
    """sum w^2 (float64), and 2 lam w into ``grad``."""
    return _penalty(_re.l2_penalty, w, grad, lam)


def l1_penalty(w, grad, lam):
    """sum |w| (float64), and lam sign(w) into ``grad``."""
    return _penalty(_re.l1_penalty, w, grad, lam)


def max_norm_(weight, c):
    """Rows of ``weight`` (any strides) with norm above ``c`` rescaled in place."""
    # a subclass (np.matrix) through a plain view of the same memory
    plain = weight if type(weight) is np.ndarray else weight.view(np.ndarray)
    _re.max_norm.pick(weight.size)(plain, c)



# ------------------------------------------------------------------ activation layers

def activation(x, act, slope, out):
    """out = act(x) elementwise: ``x`` of any shape and strides, ``out`` C-contiguous."""
    kernel, n_chunks = _ac.activation_forward.pick_chunks(x.size, _CHUNKS_PER_THREAD)
    kernel(_c(x).ravel(), out.ravel(), act, x.dtype.type(slope), n_chunks)


def activation_grad(dy, y, act, slope, dx):
    """dx = dy * act'(x) from the forward output ``y``; ``dx`` C-contiguous, y's shape."""
    kernel, n_chunks = _ac.activation_backward.pick_chunks(y.size, _CHUNKS_PER_THREAD)
    kernel(_c(dy).ravel(), _c(y).ravel(), act, y.dtype.type(slope), dx.ravel(), n_chunks)


def accumulate_(grad, g):
    """In place: grad += g (a layer's gradient summed into its parameter's)."""
    grad += g
    return grad


# ------------------------------------------------------------------ optimizer steps

def zeros_like(a):
    """A zeroed host array like ``a`` (an optimizer's state buffer)."""
    return np.zeros_like(a)


def _view2d(a):
    """A 2-D view of ``a`` (a view, never a copy: the kernels update in place)."""
    if a.ndim == 2:
        return a
    if a.ndim == 1:
        return a[np.newaxis]
    if a.flags.c_contiguous:
        return a.reshape(1, -1)
    raise ValueError(f"parameters with {a.ndim} dimensions must be C-contiguous, "
                     f"got strides {a.strides}")


def sgd_step(w, g, buf, lr, weight_decay, momentum, nesterov, first):
    """One SGD step in place (:func:`fastnn._cpu.optim.sgd_rule`); ``buf`` None without momentum."""
    w2 = _view2d(w)
    _op.sgd_kernel.pick(w.size)(w2, _view2d(g), w2 if buf is None else _view2d(buf), lr,
                                weight_decay, momentum, nesterov, first)


def adam_step(w, g, m, v, lr, beta1, beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled):
    """One Adam / AdamW step in place (:func:`fastnn._cpu.optim.adam_rule`)."""
    _op.adam_kernel.pick(w.size)(_view2d(w), _view2d(g), _view2d(m), _view2d(v), lr, beta1,
                                 beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled)
