"""What ``fastnn bench`` measures: every kernel, its data, its competitors.

Each :class:`Kernel` names the fastnn functions it needs, builds its input
data for an ``(N, D)`` size, and has one builder per implementation:

* ``fastnn``  -- the public fastnn function(s), returning fresh outputs;
* ``fastnn_out`` -- the same calls with ``out=`` buffers allocated once by the
  builder (outside the timing) and reused by every call: kernels whose
  public function accepts ``out`` only (StandardScaler: ``copy=False`` on a
  working copy).  The reused buffer measures the kernel itself, which is
  what GB/s and "% of STREAM" are about, while "x torch" compares fresh
  outputs on both sides (torch allocates too; fastnn's large fresh outputs
  come from the buffer cache of :mod:`fastnn.memory`, which the timing loop
  refills by dropping each result).  It runs in the fastnn worker;
* ``numpy``   -- a plain-numpy implementation, written as a competent user
  would write it (vectorized, no Python loops);
* ``torch``   -- the torch CPU equivalent (autograd where torch users use it);
* ``sklearn`` -- scikit-learn, for the preprocessing estimators;
* ``gemm``    -- PCA only: its two matrix products alone (the lower bound the
  PCA target is measured against).

A builder takes the data dict and returns a zero-argument callable that does
the work (or ``(callable, post)`` where ``post`` maps the callable's result
to the canonical outputs).  Every implementation of a kernel returns the
same canonical outputs, so the tests can check that the competitors compute
the same thing as fastnn (``tests/test_bench_kernels.py``,
``tests/test_bench.py``).  Nothing here imports torch or scikit-learn at
module level: each runs in its own worker process.

Bandwidth is counted with the byte models below (:data:`BYTE_MODEL`), the
matrix-product kernels with :data:`FLOP_MODEL`.
"""
import importlib
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------
# Byte models: the MINIMUM traffic a kernel must move, in element-sized passes
# over its (N, D) arrays.  Bytes = passes * N * D * itemsize, so at float32 a
# pass is 4 B/element (batch norm forward: 3 passes = 12 B/element).
# Per-row labels and per-feature vectors (mean, weight, bias: D elements) are
# negligible next to N * D and are not counted; neither is the write-allocate
# read of an output (STREAM does not count it either).  GB/s = bytes / median
# time / 1e9, and "% of peak" compares it with the STREAM figure named in the
# last column, measured in the same run.
# ---------------------------------------------------------------------------
BYTE_MODEL = {
    # kernel:                          (passes, peak,    what is counted)
    "batch_norm_train_fwd":            (3, "triad", "read x for the statistics, read x again, "
                                                    "write y"),
    "batch_norm_train_fwd_bwd":        (8, "triad", "forward 3 (12 B) + backward 5 (20 B): "
                                                    "read dy and x for the two sums, read dy and "
                                                    "x again, write dx"),
    "batch_norm_eval_fwd":             (2, "triad", "read x, write y (running statistics are "
                                                    "constants)"),
    "layer_norm_fwd":                  (2, "triad", "read x, write y (each row's statistics "
                                                    "passes re-read it from cache)"),
    "layer_norm_fwd_bwd":              (5, "triad", "forward 2 (8 B) + backward 3 (12 B): read "
                                                    "dy and x, write dx; the row sums and "
                                                    "dweight/dbias re-read cached rows"),
    "dropout_fwd":                     (2, "copy",  "read x, write y; the mask is regenerated, "
                                                    "never stored"),
    "dropout_bwd":                     (2, "copy",  "read dy, write dx; the mask is regenerated "
                                                    "from the seed"),
    "softmax":                         (2, "triad", "read x, write the probabilities"),
    "cross_entropy_fwd_bwd":           (2, "triad", "fused: read logits, write dlogits (8 B at "
                                                    "float32)"),
    "hinge_fwd_bwd":                   (2, "triad", "fused: read scores, write dscores"),
    "mse_fwd_bwd":                     (3, "triad", "fused: read pred and target, write dpred"),
    "l1_loss_fwd_bwd":                 (3, "triad", "fused: read pred and target, write dpred"),
    "l2_penalty":                      (2, "triad", "read w, write the gradient"),
    "l1_penalty":                      (2, "triad", "read w, write the gradient"),
    "max_norm_":                       (2, "triad", "read w, write w (each row's second read, "
                                                    "for the scaling, hits the cache); every row "
                                                    "is rescaled"),
    "standard_scaler_fit_transform":   (3, "triad", "fit: read x once (one-pass Chan/Welford); "
                                                    "transform: read x, write y"),
}

# Compute-bound kernels: flops = factor * N * D * D_out (D_out = D here).
FLOP_MODEL = {
    # kernel:                (factor, peak,   what is counted)
    "linear_fwd":            (2, "sgemm", "x @ W.T; the bias+ReLU epilogue is not counted"),
    "linear_bwd":            (4, "sgemm", "dx = g @ W and dW = g.T @ x; db and the ReLU mask "
                                          "are not counted"),
    "pca_whiten_fit_transform": (4, "sgemm", "X.T @ X (counted as a full product) and X @ V"),
}

# Size names for --sizes.  "extra" is per kernel (Kernel.extra_sizes): the
# shapes the performance targets name (cross-entropy with C = 1000 and
# C = 32768 classes, the 256-row linear layer).  "tiny" measures per-call
# overhead.
SIZES = {
    "tiny": [(2, 8)],
    "small": [(64, 256)],
    "medium": [(4096, 1024)],
    "large": [(32768, 1024)],   # 128 MiB at float32: larger than the L3 cache
}
DEFAULT_SIZES = ("tiny", "small", "medium", "large", "extra")
QUICK_SIZES = ("tiny", "small")


@dataclass
class Kernel:
    """One benchmarked kernel (see the module docstring)."""

    name: str
    requires: tuple            # dotted names inside fastnn, e.g. "functional.batch_norm"
    setup: object              # (n, d, dtype) -> dict of arrays
    builders: dict             # implementation name -> builder(data)
    doc: str = ""
    extra_sizes: tuple = ()
    compare: str = "allclose"  # "allclose" | "dropout" | "pca"
    test_shape: tuple = (128, 512)  # 65536 elements: parallel twins under the tests' threshold
    shape_label: object = None  # (n, d) -> str
    notes: dict = field(default_factory=dict)  # implementation -> caveat

    def label(self, n, d):
        return self.shape_label(n, d) if self.shape_label else f"{n}x{d}"

    def work(self, n, d, itemsize):
        """(amount, unit, peak): bytes moved or flops done for one call."""
        if self.name in BYTE_MODEL:
            passes, peak, _ = BYTE_MODEL[self.name]
            return passes * n * d * itemsize, "B", peak
        factor, peak, _ = FLOP_MODEL[self.name]
        return factor * n * d * d, "flop", peak

    def missing(self):
        """The required fastnn names that do not exist (yet)."""
        out = []
        for dotted in self.requires:
            module, _, attr = dotted.rpartition(".")
            try:
                mod = importlib.import_module("fastnn." + module)
            except Exception as exc:  # a module being edited may not import
                out.append(f"fastnn.{dotted} ({type(exc).__name__}: {exc})")
                continue
            if not hasattr(mod, attr):
                out.append(f"fastnn.{dotted}")
        return out

    def build(self, impl, data):
        """(run, post) for implementation ``impl``."""
        built = self.builders[impl](data)
        run, post = built if isinstance(built, tuple) else (built, None)
        return run, post or (lambda result: result)

    def outputs(self, impl, data):
        """Run ``impl`` once and return its canonical outputs as numpy."""
        run, post = self.build(impl, data)
        return tuple(to_numpy(o) for o in post(run()))


def to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _rng():
    return np.random.default_rng(12345)


def _normal(rng, shape, dtype, scale=1.0, loc=0.0):
    a = rng.standard_normal(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    if scale != 1.0:
        a *= scale
    if loc != 0.0:
        a += loc
    return a


def _labels(rng, n, c):
    return rng.integers(0, c, size=n, dtype=np.int64)


def _buffer(a):
    """An output buffer like ``a`` (C order), allocated once per case.

    The warm-up calls of the timing touch its pages before any sample.
    """
    return np.empty(a.shape, dtype=a.dtype)


def _torch():
    import torch
    return torch


def _t(a):
    return _torch().from_numpy(a)


# ----------------------------------------------------------------- linear
def _linear_setup(n, d, dtype):
    rng = _rng()
    x = _normal(rng, (n, d), dtype)
    w = _normal(rng, (d, d), dtype, scale=1.0 / np.sqrt(d))
    b = _normal(rng, (d,), dtype, scale=0.1)
    y = np.maximum(x @ w.T + b, 0).astype(dtype)
    dy = _normal(rng, (n, d), dtype)
    return dict(x=x, w=w, b=b, y=y, dy=dy)


def _linear_fwd_fastnn(D):
    import fastnn.functional as F
    x, w, b = D["x"], D["w"], D["b"]
    return lambda: (F.linear(x, w, b, activation="relu"),)


def _linear_fwd_numpy(D):
    x, w, b = D["x"], D["w"], D["b"]

    def run():
        y = x @ w.T
        y += b
        np.maximum(y, 0, out=y)
        return (y,)
    return run


def _linear_fwd_torch(D):
    torch = _torch()
    x, w, b = _t(D["x"]), _t(D["w"]), _t(D["b"])

    def run():
        with torch.no_grad():
            return (torch.relu_(torch.nn.functional.linear(x, w, b)),)
    return run


def _linear_bwd_fastnn(D):
    import fastnn.functional as F
    dy, x, w, y = D["dy"], D["x"], D["w"], D["y"]
    return lambda: F.linear_backward(dy, x, w, y, activation="relu")


def _linear_bwd_numpy(D):
    dy, x, w, y = D["dy"], D["x"], D["w"], D["y"]

    def run():
        g = np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
        return g @ w, g.T @ x, g.sum(axis=0)
    return run


def _linear_bwd_torch(D):
    torch = _torch()
    dy, x, w, y = (_t(D[k]) for k in ("dy", "x", "w", "y"))

    def run():
        # What autograd runs for relu(linear(x)): threshold_backward, then
        # the two matrix products and the bias sum.
        g = torch.ops.aten.threshold_backward(dy, y, 0)
        return g @ w, g.t() @ x, g.sum(0)
    return run


# ------------------------------------------------------------- batch norm
EPS = 1e-5
MOMENTUM = 0.1


def _bn_setup(n, d, dtype):
    rng = _rng()
    return dict(
        x=_normal(rng, (n, d), dtype, scale=2.0, loc=3.0),
        dy=_normal(rng, (n, d), dtype),
        w=_normal(rng, (d,), dtype, scale=0.1, loc=1.0),
        b=_normal(rng, (d,), dtype, scale=0.1),
        running_mean=_normal(rng, (d,), dtype, scale=0.1, loc=3.0),
        running_var=np.abs(_normal(rng, (d,), dtype, scale=0.2, loc=4.0)),
    )


def _bn_stats(D):
    return D["running_mean"].copy(), D["running_var"].copy()


def _bn_train_fastnn(D, backward, out=False):
    import fastnn.functional as F
    x, dy, w, b = D["x"], D["dy"], D["w"], D["b"]
    rm, rv = _bn_stats(D)
    y_buf = _buffer(x) if out else None
    dx_buf = _buffer(x) if out and backward else None

    def run():
        y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=True,
                                       momentum=MOMENTUM, eps=EPS, out=y_buf)
        if not backward:
            return (y,)
        dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, w, training=True, out=dx_buf)
        return y, dx, dw, db
    return run


def _bn_train_numpy(D, backward):
    x, dy, w, b = D["x"], D["dy"], D["w"], D["b"]
    rm, rv = _bn_stats(D)
    n = x.shape[0]

    def run():
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        invstd = 1.0 / np.sqrt(var + EPS)
        xhat = (x - mean) * invstd
        y = xhat * w + b
        rm[:] = (1 - MOMENTUM) * rm + MOMENTUM * mean
        rv[:] = (1 - MOMENTUM) * rv + MOMENTUM * var * (n / max(n - 1, 1))
        if not backward:
            return (y,)
        db = dy.sum(axis=0)
        dw = (dy * xhat).sum(axis=0)
        dx = (w * invstd / n) * (n * dy - db - xhat * dw)
        return y, dx, dw, db
    return run


def _bn_train_torch(D, backward):
    torch = _torch()
    x, dy, w, b = (_t(D[k]) for k in ("x", "dy", "w", "b"))
    rm, rv = (_t(a) for a in _bn_stats(D))
    bn = torch.nn.functional.batch_norm
    if not backward:
        def run():
            with torch.no_grad():
                return (bn(x, rm, rv, w, b, training=True, momentum=MOMENTUM, eps=EPS),)
        return run
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)

    def run():
        y = bn(x, rm, rv, w, b, training=True, momentum=MOMENTUM, eps=EPS)
        return (y,) + torch.autograd.grad(y, (x, w, b), dy)
    return run


def _bn_eval_fastnn(D, out=False):
    import fastnn.functional as F
    x, w, b, rm, rv = D["x"], D["w"], D["b"], D["running_mean"], D["running_var"]
    buf = _buffer(x) if out else None
    return lambda: (F.batch_norm(x, rm, rv, w, b, training=False, eps=EPS, out=buf)[0],)


def _bn_eval_numpy(D):
    x, w, b, rm, rv = D["x"], D["w"], D["b"], D["running_mean"], D["running_var"]

    def run():
        scale = w / np.sqrt(rv + EPS)
        y = x * scale
        y += b - rm * scale
        return (y,)
    return run


def _bn_eval_torch(D):
    torch = _torch()
    x, w, b, rm, rv = (_t(D[k]) for k in ("x", "w", "b", "running_mean", "running_var"))

    def run():
        with torch.no_grad():
            return (torch.nn.functional.batch_norm(x, rm, rv, w, b, training=False, eps=EPS),)
    return run


# ------------------------------------------------------------- layer norm
def _ln_setup(n, d, dtype):
    """Batch norm's x, dy, w, b (the same draws); layer norm keeps no running stats."""
    data = _bn_setup(n, d, dtype)
    return {key: data[key] for key in ("x", "dy", "w", "b")}


def _ln_fastnn(D, backward, out=False):
    import fastnn.functional as F
    x, dy, w, b = D["x"], D["dy"], D["w"], D["b"]
    d = x.shape[1]
    y_buf = _buffer(x) if out else None
    dx_buf = _buffer(x) if out and backward else None

    def run():
        y, mean, invstd = F.layer_norm(x, d, w, b, eps=EPS, out=y_buf)
        if not backward:
            return (y,)
        dx, dw, db = F.layer_norm_backward(dy, x, d, mean, invstd, w, out=dx_buf)
        return y, dx, dw, db
    return run


def _ln_numpy(D, backward):
    x, dy, w, b = D["x"], D["dy"], D["w"], D["b"]

    def run():
        xc = x - x.mean(axis=1, keepdims=True)
        invstd = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + EPS)
        xhat = xc * invstd
        y = xhat * w + b
        if not backward:
            return (y,)
        g = dy * w
        dx = invstd * (g - g.mean(axis=1, keepdims=True)
                       - xhat * (g * xhat).mean(axis=1, keepdims=True))
        return y, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)
    return run


def _ln_torch(D, backward):
    torch = _torch()
    x, dy, w, b = (_t(D[k]) for k in ("x", "dy", "w", "b"))
    shape = (x.shape[1],)
    ln = torch.nn.functional.layer_norm
    if not backward:
        def run():
            with torch.no_grad():
                return (ln(x, shape, w, b, eps=EPS),)
        return run
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)

    def run():
        y = ln(x, shape, w, b, eps=EPS)
        return (y,) + torch.autograd.grad(y, (x, w, b), dy)
    return run


# ---------------------------------------------------------------- dropout
P_DROP = 0.5
SEED = 7


def _dropout_setup(n, d, dtype):
    rng = _rng()
    return dict(x=_normal(rng, (n, d), dtype), dy=_normal(rng, (n, d), dtype))


def _dropout_fwd_fastnn(D, out=False):
    import fastnn.functional as F
    x = D["x"]
    buf = _buffer(x) if out else None
    return lambda: (F.dropout(x, p=P_DROP, training=True, seed=SEED, out=buf),)


def _dropout_bwd_fastnn(D, out=False):
    import fastnn.functional as F
    dy = D["dy"]
    buf = _buffer(dy) if out else None
    return lambda: (F.dropout_backward(dy, P_DROP, SEED, out=buf),)


def _dropout_fwd_numpy(D):
    x = D["x"]
    rng = np.random.default_rng(SEED)
    scale = x.dtype.type(1.0 / (1.0 - P_DROP))

    def run():
        # numpy's way: draw and keep a mask (backward needs it).
        mask = rng.random(x.shape, dtype=x.dtype) >= P_DROP
        y = x * mask
        y *= scale
        return (y,)
    return run


def _dropout_mask(D):
    return np.random.default_rng(SEED).random(D["dy"].shape) >= P_DROP


def _dropout_bwd_numpy(D):
    dy = D["dy"]
    mask = _dropout_mask(D)  # stored by the forward pass
    scale = dy.dtype.type(1.0 / (1.0 - P_DROP))

    def run():
        dx = dy * mask
        dx *= scale
        return (dx,)
    return run


def _dropout_fwd_torch(D):
    torch = _torch()
    x = _t(D["x"])

    def run():
        with torch.no_grad():
            return (torch.nn.functional.dropout(x, P_DROP, training=True),)
    return run


def _dropout_bwd_torch(D):
    torch = _torch()
    dy = _t(D["dy"])
    mask = _t(_dropout_mask(D))  # torch's forward stores a bool mask
    scale = 1.0 / (1.0 - P_DROP)
    return lambda: (torch.ops.aten.native_dropout_backward(dy, mask, scale),)


# ------------------------------------------------- softmax, cross-entropy
def _ce_setup(n, c, dtype):
    rng = _rng()
    return dict(x=_normal(rng, (n, c), dtype, scale=2.0), target=_labels(rng, n, c))


def _softmax_fastnn(D):
    import fastnn.functional as F
    x = D["x"]
    return lambda: (F.softmax(x, axis=-1),)


def _softmax_numpy(D):
    x = D["x"]

    def run():
        e = np.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return (e,)
    return run


def _softmax_torch(D):
    torch = _torch()
    x = _t(D["x"])
    return lambda: (torch.softmax(x, dim=1),)


def _ce_fastnn(D, out=False):
    import fastnn.functional as F
    x, t = D["x"], D["target"]
    buf = _buffer(x) if out else None
    return lambda: F.cross_entropy_with_grad(x, t, out=buf)


def _ce_numpy(D):
    x, t = D["x"], D["target"]
    n = x.shape[0]
    rows = np.arange(n)

    def run():
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - z[rows, t])
        e /= s
        e[rows, t] -= 1
        e *= x.dtype.type(1.0 / n)
        return loss, e
    return run


def _ce_torch(D):
    torch = _torch()
    x = _t(D["x"]).clone().requires_grad_(True)
    t = _t(D["target"])

    def run():
        loss = torch.nn.functional.cross_entropy(x, t)
        return (loss,) + torch.autograd.grad(loss, x)
    return run


# ------------------------------------------------------------------ hinge
def _hinge_fastnn(D, out=False):
    import fastnn.functional as F
    s, t = D["x"], D["target"]
    buf = _buffer(s) if out else None
    return lambda: F.hinge_loss_with_grad(s, t, margin=1.0, out=buf)


def _hinge_numpy(D):
    s, t = D["x"], D["target"]
    n = s.shape[0]
    rows = np.arange(n)

    def run():
        margins = s - s[rows, t][:, None] + s.dtype.type(1.0)
        margins[rows, t] = 0
        pos = margins > 0
        loss = np.sum(margins, where=pos) / n
        grad = pos.astype(s.dtype)
        grad[rows, t] = -pos.sum(axis=1)
        grad *= s.dtype.type(1.0 / n)
        return loss, grad
    return run


def _hinge_torch(D):
    torch = _torch()
    s = _t(D["x"]).clone().requires_grad_(True)
    t = _t(D["target"])
    c = s.shape[1]

    def run():
        loss = torch.nn.functional.multi_margin_loss(s, t, p=1, margin=1.0)
        return (loss,) + torch.autograd.grad(loss, s)

    # torch's multi_margin_loss divides each sample's sum by C; the lesson's
    # loss does not.  Rescaled outside the timed call.
    return run, lambda out: (out[0] * c, out[1] * c)


# -------------------------------------------------------- regression losses
def _reg_setup(n, d, dtype):
    rng = _rng()
    return dict(pred=_normal(rng, (n, d), dtype), target=_normal(rng, (n, d), dtype))


def _mse_fastnn(D, out=False):
    import fastnn.functional as F
    p, t = D["pred"], D["target"]
    buf = _buffer(p) if out else None
    return lambda: F.mse_loss_with_grad(p, t, out=buf)


def _l1_fastnn(D, out=False):
    import fastnn.functional as F
    p, t = D["pred"], D["target"]
    buf = _buffer(p) if out else None
    return lambda: F.l1_loss_with_grad(p, t, out=buf)


def _mse_numpy(D):
    p, t = D["pred"], D["target"]

    def run():
        r = p - t
        loss = np.vdot(r, r) / r.size
        r *= p.dtype.type(2.0 / r.size)
        return loss, r
    return run


def _l1_numpy(D):
    p, t = D["pred"], D["target"]

    def run():
        r = p - t
        loss = np.abs(r).sum() / r.size
        g = np.sign(r)
        g *= p.dtype.type(1.0 / r.size)
        return loss, g
    return run


def _reg_torch(loss_name):
    def build(D):
        torch = _torch()
        p = _t(D["pred"]).clone().requires_grad_(True)
        t = _t(D["target"])
        fn = getattr(torch.nn.functional, loss_name)

        def run():
            loss = fn(p, t)
            return (loss,) + torch.autograd.grad(loss, p)
        return run
    return build


# --------------------------------------------------------- regularization
LAM = 1e-3


def _w_setup(n, d, dtype):
    return dict(w=_normal(_rng(), (n, d), dtype))


def _l2_fastnn(D, out=False):
    import fastnn.functional as F
    w = D["w"]
    buf = _buffer(w) if out else None
    return lambda: F.l2_penalty(w, LAM, out=buf)


def _l1p_fastnn(D, out=False):
    import fastnn.functional as F
    w = D["w"]
    buf = _buffer(w) if out else None
    return lambda: F.l1_penalty(w, LAM, out=buf)


def _l2_numpy(D):
    w = D["w"]
    return lambda: (LAM * np.vdot(w, w), w * w.dtype.type(2 * LAM))


def _l1p_numpy(D):
    w = D["w"]

    def run():
        g = np.sign(w)
        g *= w.dtype.type(LAM)
        return LAM * np.abs(w).sum(), g
    return run


def _l2_torch(D):
    torch = _torch()
    w = _t(D["w"])
    flat = w.reshape(-1)
    return lambda: (LAM * torch.dot(flat, flat), w * (2 * LAM))


def _l1p_torch(D):
    torch = _torch()
    w = _t(D["w"])
    return lambda: (LAM * w.abs().sum(), torch.sign(w).mul_(LAM))


def _maxnorm_setup(n, d, dtype):
    w = _normal(_rng(), (n, d), dtype)
    norms = np.sqrt(np.einsum("ij,ij->i", w.astype(np.float64), w))
    return dict(w0=w, c=float(np.min(norms)) if n else 1.0)


class _ShrinkingBound:
    """Bounds c * 0.999**k for k = 1, 2, ...: every call projects every row.

    A projection leaves all rows at norm <= c, so repeating it with the same
    c would time a read-only pass; restoring w from a copy before each call
    made the copy the larger part of every competitor's time.  With a bound
    0.1% below the last, each call reads w and rescales all of it.  Every
    ~690 calls (bound < c / 2) w is restored once and the bound restarts, so
    a long sample never drifts towards denormals.  The first call (the output
    the tests compare) uses 0.999 c for every implementation.
    """

    def __init__(self, w0, c):
        self.w0, self.c, self.bound = w0, c, c

    def __call__(self, w):
        """The next bound; ``w`` (the numpy array being projected) may be reset first."""
        self.bound *= 0.999
        if self.bound < 0.5 * self.c:
            np.copyto(w, self.w0)
            self.bound = 0.999 * self.c
        return self.bound


def _maxnorm_fastnn(D):
    import fastnn.functional as F
    w, bound = D["w0"].copy(), _ShrinkingBound(D["w0"], D["c"])
    return lambda: (F.max_norm_(w, bound(w)),)


def _maxnorm_numpy(D):
    w, bound = D["w0"].copy(), _ShrinkingBound(D["w0"], D["c"])

    def run():
        c = bound(w)   # first: it may reset w
        norms = np.sqrt(np.einsum("ij,ij->i", w, w))
        np.multiply(w, np.minimum(1, c / norms).astype(w.dtype)[:, None], out=w)
        return (w,)
    return run


def _maxnorm_torch(D):
    w, bound = D["w0"].copy(), _ShrinkingBound(D["w0"], D["c"])
    wt = _t(w)   # shares w's memory, so a reset of w resets the tensor
    return lambda: (wt.renorm_(2, 0, bound(w)),)


# ------------------------------------------------------------ preprocessing
def _scaler_setup(n, d, dtype):
    return dict(x=_normal(_rng(), (n, d), dtype, scale=3.0, loc=5.0))


def _scaler_fastnn(D, out=False):
    from fastnn.preprocessing import StandardScaler
    if out:
        # copy=False standardizes a working copy in place (the "out=" of an
        # estimator); later calls re-standardize it, which is the same work.
        work = D["x"].copy()
        return lambda: (StandardScaler(copy=False).fit_transform(work),)
    x = D["x"]
    return lambda: (StandardScaler().fit_transform(x),)


def _scaler_numpy(D):
    x = D["x"]

    def run():
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std == 0] = 1
        return ((x - mean) / std,)
    return run


def _scaler_sklearn(D):
    from sklearn.preprocessing import StandardScaler
    x = D["x"]
    return lambda: (StandardScaler().fit_transform(x),)


def _pca_setup(n, d, dtype):
    rng = _rng()
    # Distinct column scales give distinct eigenvalues (well-defined axes).
    x = _normal(rng, (n, d), dtype) * np.linspace(1.0, 3.0, d).astype(dtype)
    return dict(x=x)


def _pca_fastnn(D):
    from fastnn.preprocessing import PCA
    x = D["x"]
    return lambda: (PCA(whiten=True, eps=EPS).fit_transform(x),)


def _pca_numpy(D):
    x = D["x"]

    def run():
        xc = x - x.mean(axis=0)
        cov = (xc.T @ xc) / max(x.shape[0] - 1, 1)
        evals, evecs = np.linalg.eigh(cov)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        z = xc @ evecs
        z /= np.sqrt(np.maximum(evals, 0) + EPS).astype(x.dtype)
        return (z,)
    return run


def _pca_gemm(D):
    x = D["x"]
    v = np.linalg.qr(np.random.default_rng(0).standard_normal((x.shape[1],) * 2))[0].astype(x.dtype)
    # Only the two products PCA cannot avoid; the "PCA <= 1.25x its matrix
    # products" target divides fastnn's PCA time by this time.
    return lambda: (x.T @ x, x @ v)


def _pca_sklearn(D):
    from sklearn.decomposition import PCA
    x = D["x"]
    # covariance_eigh: scikit-learn's fastest solver for N >> D, the same
    # algorithm as fastnn's (the strongest fair competitor).
    return lambda: (PCA(whiten=True, svd_solver="covariance_eigh").fit_transform(x),)


def _bind(fn, **kw):
    def build(D):
        return fn(D, **kw)
    return build


def _lin_label(n, d):
    return f"{n}x{d}x{d}"


KERNELS = [
    Kernel("linear_fwd", ("functional.linear",), _linear_setup,
           dict(fastnn=_linear_fwd_fastnn, numpy=_linear_fwd_numpy, torch=_linear_fwd_torch),
           doc="linear + bias + ReLU forward, N x in x out", extra_sizes=((256, 1024),),
           shape_label=_lin_label),
    Kernel("linear_bwd", ("functional.linear_backward",), _linear_setup,
           dict(fastnn=_linear_bwd_fastnn, numpy=_linear_bwd_numpy, torch=_linear_bwd_torch),
           doc="linear + bias + ReLU backward -> (dx, dW, db)", extra_sizes=((256, 1024),),
           shape_label=_lin_label),
    Kernel("batch_norm_train_fwd", ("functional.batch_norm",), _bn_setup,
           dict(fastnn=_bind(_bn_train_fastnn, backward=False),
                fastnn_out=_bind(_bn_train_fastnn, backward=False, out=True),
                numpy=_bind(_bn_train_numpy, backward=False),
                torch=_bind(_bn_train_torch, backward=False)),
           doc="batch norm, training forward (batch statistics, running stats updated)"),
    Kernel("batch_norm_train_fwd_bwd", ("functional.batch_norm", "functional.batch_norm_backward"),
           _bn_setup,
           dict(fastnn=_bind(_bn_train_fastnn, backward=True),
                fastnn_out=_bind(_bn_train_fastnn, backward=True, out=True),
                numpy=_bind(_bn_train_numpy, backward=True),
                torch=_bind(_bn_train_torch, backward=True)),
           doc="batch norm, training forward + backward (torch: autograd)"),
    Kernel("batch_norm_eval_fwd", ("functional.batch_norm",), _bn_setup,
           dict(fastnn=_bn_eval_fastnn, fastnn_out=_bind(_bn_eval_fastnn, out=True),
                numpy=_bn_eval_numpy, torch=_bn_eval_torch),
           doc="batch norm, eval forward (running statistics)"),
    Kernel("layer_norm_fwd", ("functional.layer_norm",), _ln_setup,
           dict(fastnn=_bind(_ln_fastnn, backward=False),
                fastnn_out=_bind(_ln_fastnn, backward=False, out=True),
                numpy=_bind(_ln_numpy, backward=False), torch=_bind(_ln_torch, backward=False)),
           doc="layer norm forward over the last axis (per-row statistics)"),
    Kernel("layer_norm_fwd_bwd", ("functional.layer_norm", "functional.layer_norm_backward"),
           _ln_setup,
           dict(fastnn=_bind(_ln_fastnn, backward=True),
                fastnn_out=_bind(_ln_fastnn, backward=True, out=True),
                numpy=_bind(_ln_numpy, backward=True), torch=_bind(_ln_torch, backward=True)),
           doc="layer norm forward + backward -> (y, dx, dweight, dbias) (torch: autograd)"),
    Kernel("dropout_fwd", ("functional.dropout",), _dropout_setup,
           dict(fastnn=_dropout_fwd_fastnn, fastnn_out=_bind(_dropout_fwd_fastnn, out=True),
                numpy=_dropout_fwd_numpy, torch=_dropout_fwd_torch),
           doc="inverted dropout forward, p = 0.5", compare="dropout"),
    Kernel("dropout_bwd", ("functional.dropout_backward",), _dropout_setup,
           dict(fastnn=_dropout_bwd_fastnn, fastnn_out=_bind(_dropout_bwd_fastnn, out=True),
                numpy=_dropout_bwd_numpy, torch=_dropout_bwd_torch),
           doc="dropout backward, p = 0.5 (numpy/torch: stored mask)", compare="dropout"),
    Kernel("softmax", ("functional.softmax",), _ce_setup,
           dict(fastnn=_softmax_fastnn, numpy=_softmax_numpy, torch=_softmax_torch),
           doc="softmax over the last axis"),
    Kernel("cross_entropy_fwd_bwd", ("functional.cross_entropy_with_grad",), _ce_setup,
           dict(fastnn=_ce_fastnn, fastnn_out=_bind(_ce_fastnn, out=True),
                numpy=_ce_numpy, torch=_ce_torch),
           doc="fused softmax cross-entropy, loss + dlogits, N x C",
           extra_sizes=((4096, 1000), (1024, 32768))),
    Kernel("hinge_fwd_bwd", ("functional.hinge_loss_with_grad",), _ce_setup,
           dict(fastnn=_hinge_fastnn, fastnn_out=_bind(_hinge_fastnn, out=True),
                numpy=_hinge_numpy, torch=_hinge_torch),
           doc="multiclass SVM loss + dscores (torch: multi_margin_loss x C)"),
    Kernel("mse_fwd_bwd", ("functional.mse_loss_with_grad",), _reg_setup,
           dict(fastnn=_mse_fastnn, fastnn_out=_bind(_mse_fastnn, out=True),
                numpy=_mse_numpy, torch=_reg_torch("mse_loss")),
           doc="MSE loss + dpred"),
    Kernel("l1_loss_fwd_bwd", ("functional.l1_loss_with_grad",), _reg_setup,
           dict(fastnn=_l1_fastnn, fastnn_out=_bind(_l1_fastnn, out=True),
                numpy=_l1_numpy, torch=_reg_torch("l1_loss")),
           doc="L1 (MAE) loss + dpred"),
    Kernel("l2_penalty", ("functional.l2_penalty",), _w_setup,
           dict(fastnn=_l2_fastnn, fastnn_out=_bind(_l2_fastnn, out=True),
                numpy=_l2_numpy, torch=_l2_torch),
           doc="lam * sum(w**2) and its gradient"),
    Kernel("l1_penalty", ("functional.l1_penalty",), _w_setup,
           dict(fastnn=_l1p_fastnn, fastnn_out=_bind(_l1p_fastnn, out=True),
                numpy=_l1p_numpy, torch=_l1p_torch),
           doc="lam * sum(|w|) and its gradient"),
    Kernel("max_norm_", ("functional.max_norm_",), _maxnorm_setup,
           dict(fastnn=_maxnorm_fastnn, numpy=_maxnorm_numpy, torch=_maxnorm_torch),
           doc="max-norm projection of each row, in place (torch: renorm_)"),
    Kernel("standard_scaler_fit_transform", ("preprocessing.StandardScaler",), _scaler_setup,
           dict(fastnn=_scaler_fastnn, fastnn_out=_bind(_scaler_fastnn, out=True),
                numpy=_scaler_numpy, sklearn=_scaler_sklearn),
           doc="StandardScaler().fit_transform"),
    Kernel("pca_whiten_fit_transform", ("preprocessing.PCA",), _pca_setup,
           dict(fastnn=_pca_fastnn, numpy=_pca_numpy, sklearn=_pca_sklearn, gemm=_pca_gemm),
           doc="PCA(whiten=True).fit_transform, all components", compare="pca",
           test_shape=(256, 16)),
]
KERNELS_BY_NAME = {k.name: k for k in KERNELS}

# Implementation -> the worker process (group) that runs it.  Each group is a
# separate process so thread pools never share a process.
GROUP_OF = {"fastnn": "fastnn", "fastnn_out": "fastnn", "numpy": "numpy", "gemm": "numpy",
            "torch": "torch", "sklearn": "sklearn"}
COMPETITORS = ("numpy", "torch", "sklearn")


def select(patterns=None):
    """Kernels whose name contains one of ``patterns`` (all when empty)."""
    if not patterns:
        return list(KERNELS)
    import fnmatch
    out = [k for k in KERNELS
           if any(fnmatch.fnmatchcase(k.name, p) if any(ch in p for ch in "*?[") else p in k.name
                  for p in patterns)]
    if not out:
        raise ValueError(f"no kernel matches {patterns!r}; kernels: "
                         + ", ".join(k.name for k in KERNELS))
    return out


def shapes_for(kernel, size_names):
    """The (n, d) shapes of ``kernel`` for --sizes entries (names or NxD)."""
    shapes = []
    for s in size_names:
        if s == "extra":
            shapes.extend(kernel.extra_sizes)
        elif s in SIZES:
            shapes.extend(SIZES[s])
        else:
            shapes.append(parse_shape(s))
    seen, out = set(), []
    for sh in shapes:
        if sh not in seen:
            seen.add(sh)
            out.append(sh)
    return out


def parse_shape(text):
    try:
        n, d = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is neither one of {sorted(SIZES) + ['extra']} "
                         "nor NxD (e.g. 4096x1024)") from None
    if n < 2 or d < 1:
        raise ValueError(f"size {text!r}: need N >= 2 and D >= 1")
    return n, d


def compare_outputs(kernel, data, got, want, dtype, rtol=None):
    """Raise AssertionError unless outputs ``got`` agree with ``want``.

    ``want`` is another implementation's canonical outputs.  Dropout masks
    come from different generators, so for dropout each element of ``got``
    is checked to be either 0 or the input scaled by 1/(1-p).  ``rtol``
    overrides the dtype's tolerance (absolute tolerance: rtol x magnitude).
    """
    if rtol is None:
        rtol, atol = (2e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-9, 1e-12)
    else:
        atol = rtol
    if kernel.compare == "dropout":
        src = data["x"] if kernel.name == "dropout_fwd" else data["dy"]
        y = got[0]
        kept = src * (1.0 / (1.0 - P_DROP))
        ok = (y == 0) | np.isclose(y, kept, rtol=rtol, atol=atol)
        assert y.shape == src.shape and y.dtype == src.dtype, (y.shape, y.dtype)
        assert ok.all(), f"{kernel.name}: {np.count_nonzero(~ok)} elements neither 0 nor x/(1-p)"
        if y.size >= 1000:
            frac = np.count_nonzero(y == 0) / y.size
            assert abs(frac - P_DROP) < 0.05, f"{kernel.name}: dropped fraction {frac}"
        return
    assert len(got) == len(want), (kernel.name, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if kernel.compare == "pca":
            rtol_pca = max(rtol, 1e-3 if np.dtype(dtype) == np.float32 else 1e-7)
            signs = np.sign(np.sum(g * w, axis=0))
            signs[signs == 0] = 1
            np.testing.assert_allclose(g * signs, w, rtol=rtol_pca, atol=rtol_pca,
                                       err_msg=f"{kernel.name} output {i}")
            continue
        scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale,
                                   err_msg=f"{kernel.name} output {i}")


def first_calls(dtype=np.float32):
    """Call every present fastnn kernel once on tiny data (startup timing)."""
    done = []
    for k in KERNELS:
        if k.missing():
            continue
        data = k.setup(*SIZES["tiny"][0], np.dtype(dtype).type)
        run, _ = k.build("fastnn", data)
        run()
        done.append(k.name)
    return done
