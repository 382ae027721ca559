"""The compiled training engine: a model, a loss and an optimizer as one flat plan.

:func:`fastnn.train.fit` trains a CPU :class:`fastnn.nn.Sequential` of
``Linear`` (any activation), ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``,
``BatchNorm1d``, ``LayerNorm`` (over the last dimension) and ``Dropout``
layers with ``SGD`` (momentum, Nesterov), ``Adam`` or ``AdamW`` through this
module: one numba call per epoch (:func:`fastnn._cpu.engine.train_epoch`)
instead of a few Python calls per layer and step.  :func:`why_not` says why
a model cannot be compiled (the layer-by-layer path then runs, as the
reference it always was).

The plan keeps the parameters, their gradients, the batch-norm running
statistics and the optimizer state each in ONE contiguous array of its own
(an *arena*), private to the plan.  The arrays the model and optimizer hold
never move: :meth:`Plan.load` copies their values into the arenas when a fit
starts, and :meth:`Plan.store` writes the arenas back into those same arrays
(``arr[...] = view``), wherever Python code can look at them (see
:func:`fastnn.train.fit`).  A ``Parameter.data`` taken before a fit, a
memory-mapped weight, a ``running_mean`` held elsewhere: each keeps being the
model's and receives the trained values.

Examples
--------
>>> import numpy as np
>>> from fastnn import engine, nn, optim
>>> model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=1))
>>> engine.why_not(model, optim.Adam(model.parameters())) is None
True
>>> print(engine.why_not(nn.Sequential(nn.Sequential(nn.Linear(4, 2, rng=0)))))
... # doctest: +NORMALIZE_WHITESPACE
layer 0 is a Sequential (the engine compiles a flat Sequential of Linear, activation,
BatchNorm1d, LayerNorm and Dropout layers)
"""
import contextlib
import functools
import math
import threading

import numpy as np

from fastnn._cpu import engine as _k
from fastnn._cpu.rng import seed_key
from fastnn._loss_table import LOSS_TABLE
from fastnn._validation import ACTIVATIONS
from fastnn.functional._dropout import keep_threshold, survivor_scale
from fastnn.nn import (
    BatchNorm1d,
    Dropout,
    LayerNorm,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from fastnn.optim import SGD, Adam, AdamW

__all__ = ["Plan", "one_blas_thread", "why_not"]

# The layer types the engine compiles (exactly these: a subclass may change
# what forward does).  Their rules are the layers' own kernels; this is only
# the list of what the interpreter in fastnn._cpu.engine has an op for.
_ACTIVATION_LAYERS = (ReLU, LeakyReLU, Tanh, Sigmoid)
_LAYERS = (Linear, BatchNorm1d, LayerNorm, Dropout) + _ACTIVATION_LAYERS


def _model_reason(model):
    """Why ``model`` itself cannot be compiled, or None."""
    if type(model) is not Sequential:
        return f"the model is a {type(model).__name__}, not a fastnn.nn.Sequential"
    if len(model) == 0:
        return "the model has no layers"
    seen = {}
    for i, layer in enumerate(model):
        if type(layer) not in _LAYERS:
            return (f"layer {i} is a {type(layer).__name__} (the engine compiles a flat "
                    "Sequential of Linear, activation, BatchNorm1d, LayerNorm and Dropout "
                    "layers)")
        if type(layer) is LayerNorm and len(layer.normalized_shape) != 1:
            return (f"layer {i} is a LayerNorm over {len(layer.normalized_shape)} dimensions "
                    "(the engine trains 2-D batches: LayerNorm over the last dimension)")
        if id(layer) in seen:
            return f"layer {i} is the same object as layer {seen[id(layer)]}"
        seen[id(layer)] = i
    params = model.parameters()
    if not params:
        return "the model has no parameters"
    if model.device != "cpu":
        return "the model is on the GPU (the engine is CPU code)"
    if len({p.data.dtype for p in params}) > 1:
        return "the parameters mix float32 and float64"
    if any(b.dtype != params[0].data.dtype for _, b in model.named_buffers()):
        return "the batch-norm running statistics are not of the parameters' dtype"
    return None


def _optimizer_reason(model, optimizer):
    if type(optimizer) not in (SGD, Adam, AdamW):
        return f"the optimizer is a {type(optimizer).__name__}, not SGD, Adam or AdamW"
    params = model.parameters()
    if len(optimizer.params) != len(params) or any(
            a is not b for a, b in zip(optimizer.params, params)):
        return "the optimizer does not hold exactly model.parameters(), in order"
    keys = {frozenset(k for k in s if k != "step") for s in optimizer.state}
    if len(keys) > 1:
        return "the optimizer has state for some parameters only"
    return None


def why_not(model, optimizer=None):
    """Why the compiled engine cannot train ``model`` (with ``optimizer``), or None.

    Parameters
    ----------
    model : fastnn.nn.Module
    optimizer : fastnn.optim.Optimizer, optional
        Checked too when given: SGD, Adam or AdamW over exactly
        ``model.parameters()``, in that order.

    Returns
    -------
    str or None
        A sentence naming the obstacle (the first one found), None when the
        engine can run.

    Examples
    --------
    >>> from fastnn import engine, nn
    >>> engine.why_not(nn.Sequential(nn.Linear(3, 2, rng=0), nn.Tanh()))
    """
    reason = _missing_dependency() or _model_reason(model)
    if reason is None and optimizer is not None:
        reason = _optimizer_reason(model, optimizer)
    return reason


@functools.lru_cache(maxsize=1)
def _missing_dependency():
    """Why the engine's optional dependencies are unusable, or None.

    numba compiles ``np.dot`` to scipy's BLAS, and threadpoolctl keeps that
    BLAS on one thread while an epoch runs: both are the ``engine`` extra,
    not run-time requirements of fastnn (without them ``fit`` takes the
    layer path and says why).
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
        import threadpoolctl  # noqa: F401
    except ImportError as exc:
        return (f"the compiled engine needs scipy and threadpoolctl ({exc}); "
                "pip install 'fastnn[engine]'")
    return None


def _views(arena, shapes):
    """Views of consecutive slices of the 1-D ``arena``, one per shape."""
    views, off = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(arena[off:off + size].reshape(shape))
        off += size
    return views


def _take(view, array, what):
    """``view[...] = array``, or ValueError when Python code gave the model an array
    the plan cannot take (``what()`` names it)."""
    if not (isinstance(array, np.ndarray) and array.shape == view.shape
            and array.dtype == view.dtype):
        got = (f"a {type(array).__name__}" if not isinstance(array, np.ndarray)
               else f"shape {array.shape}, dtype {array.dtype}")
        raise ValueError(f"{what()} changed to {got} during the fit; the compiled engine "
                         f"trains shape {view.shape}, dtype {view.dtype} "
                         "(engine='layers' follows such changes)")
    view[...] = array


def _write_back(held, value):
    """``held`` with ``value`` written into it when it can take it in place, else a copy.

    The model's and the optimizer's arrays keep their identity (memory maps
    included); None, or an array of another shape or dtype, is replaced by a
    copy that shares no memory with the plan.
    """
    if isinstance(held, np.ndarray) and held.shape == value.shape and held.dtype == value.dtype:
        try:
            held[...] = value
            return held
        except ValueError:      # read-only (cheaper to try than to ask its flags)
            pass
    return value.copy()


@functools.lru_cache(maxsize=1)
def _blas_pools():
    """threadpoolctl's handle on every loaded BLAS, scipy's (numba's np.dot) included."""
    import scipy.linalg.cython_blas  # noqa: F401  (load it before the controller looks)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def _per_thread(pool):
    """Whether ``pool``'s limit holds for the calling thread only (OpenBLAS on OpenMP)."""
    return pool.internal_api == "openblas" and getattr(pool, "threading_layer", "") == "openmp"


def _set_threads(pool, n):
    """Set ``pool`` to ``n`` threads from any thread.

    threadpoolctl (3.6+) lets only one "controlling" thread change a
    process-wide OpenBLAS and silently ignores the others: a fit in a worker
    thread, while the main thread held any limit, kept the thread team.  So
    the guard takes control (keeping it while fits run: other threads'
    limits cannot undo the guard meanwhile).
    """
    release = getattr(pool, "clear_controlling_thread", None)
    if release is not None and not _per_thread(pool):
        release(force=True)
    pool.set_num_threads(n)


class _OneBlasThread:
    """The process-wide state of :func:`one_blas_thread`: how many blocks are inside it.

    The first block to enter saves each process-wide BLAS's thread count and
    sets one thread; the last to leave restores the counts and gives up
    threadpoolctl's control.  (Each block saving and restoring for itself
    failed for fits overlapping in threads: the inner one saved "1", the
    outer one restored the team while the inner one ran, and the inner one
    left the process on one thread.)  Per-thread limits are saved and set by
    each entering thread, and restored when it leaves.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.inside = 0
        self.saved = []                  # [(pool, threads)]: the process-wide pools
        self.local = threading.local()   # .saved: a stack of the per-thread pools' lists

    def enter(self):
        pools = _blas_pools().lib_controllers
        mine = [(p, p.get_num_threads()) for p in pools if _per_thread(p)]
        with self.lock:
            if self.inside == 0:
                self.saved = [(p, p.get_num_threads()) for p in pools if not _per_thread(p)]
            for pool, _ in self.saved:    # (again when inside: the limit was changed meanwhile)
                _set_threads(pool, 1)
            self.inside += 1
        for pool, _ in mine:
            _set_threads(pool, 1)
        self.local.__dict__.setdefault("saved", []).append(mine)

    def leave(self):
        for pool, threads in self.local.saved.pop():
            _set_threads(pool, threads)
        with self.lock:
            self.inside -= 1
            if self.inside == 0:
                for pool, threads in self.saved:
                    _set_threads(pool, threads)
                    release = getattr(pool, "clear_controlling_thread", None)
                    if release is not None:
                        release(force=True)
                self.saved = []


_GUARD = _OneBlasThread()


@contextlib.contextmanager
def one_blas_thread():
    """Context manager: every BLAS on one thread inside the block (~10 us to enter and leave).

    The engine's products are microseconds each; a BLAS thread team woken
    for every one of them made an epoch 170x slower (measured, 2 cores).

    Process-wide and counted: blocks may overlap in threads (fits in
    threads, ``fit_many``); the first to enter saves the BLAS thread counts,
    the last to leave restores them, and the limit holds in every thread
    in between, also while another thread holds a threadpoolctl limit.

    Examples
    --------
    >>> from fastnn import engine
    >>> with engine.one_blas_thread():
    ...     pass
    """
    _GUARD.enter()
    try:
        yield
    finally:
        _GUARD.leave()


_NO_WEIGHTS = np.empty(0)  # train_epoch's "unweighted" (one array type: one compilation)


class NotCompilable(ValueError):
    """The model, as planned, cannot run on the engine (the message says why)."""


def _batch_starts(batches):
    return np.array([b[0] for b in batches] + [batches[-1][1]], dtype=np.int64)


class Plan:
    """A CPU Sequential + loss + optimizer as the flat arrays of one compiled epoch.

    The plan owns its arenas (parameters, gradients, batch-norm running
    statistics, optimizer state); building it copies the model's and the
    optimizer's values in (:meth:`load`).  :meth:`epoch` runs one epoch in one
    numba call on the arenas alone, :meth:`store` writes the results back into
    the arrays the model and optimizer hold (never rebinding them), and
    :meth:`load` takes in whatever Python code changed in between, so
    ``fit`` brackets every place where Python can look (callbacks,
    validation, the end of the fit, an error) with the two.

    Parameters
    ----------
    model : fastnn.nn.Sequential
        Passes :func:`why_not`.
    optimizer : fastnn.optim.SGD, Adam or AdamW over ``model.parameters()``
    loss : {"cross_entropy", "hinge", "mse", "mae", "binary_cross_entropy"}
    n_features : int
        Columns of X.
    batches : list of (start, stop)
        The epoch's batches (as :func:`fastnn.train.fit` cuts them).
    l2, l1 : float
    max_norm : float or None

    Raises
    ------
    NotCompilable
        The model fails :func:`why_not`, or its widths do not chain (the
        layer path then reports the error as it always has).
    """

    def __init__(self, model, optimizer, loss, n_features, batches, l2=0.0, l1=0.0,
                 max_norm=None):
        reason = why_not(model, optimizer)
        if reason is not None:
            raise NotCompilable(reason)
        self.model, self.optimizer = model, optimizer
        self.params = model.parameters()
        self.dtype = self.params[0].data.dtype
        self.starts = _batch_starts(batches)
        self.max_batch = int(np.diff(self.starts).max())
        if int(np.diff(self.starts).min()) < 2 and any(type(m) is BatchNorm1d for m in model):
            # the layer path refuses it with batch norm's own message
            raise NotCompilable("batch norm cannot train on a batch of one sample")
        self._lay_out_parameters(max_norm is not None)
        self._lay_out_buffers()
        self._build_ops(n_features)
        self.loss_code = LOSS_TABLE[loss].code
        self.penalties = (l2, l1, max_norm)
        self._workspace()
        self.load()

    def _lay_out_parameters(self, constrained):
        """The private parameter, gradient and state arenas, and where each parameter lies."""
        shapes = [p.data.shape for p in self.params]
        self.arena = np.zeros(sum(p.data.size for p in self.params), self.dtype)
        self.grads = np.zeros_like(self.arena)
        self.state1 = np.zeros_like(self.arena)
        # SGD keeps one state array (momentum) at most, Adam two (the moments)
        self.state2 = (np.zeros_like(self.arena) if type(self.optimizer) is not SGD
                       else self.state1[:0])
        self.tcount = np.zeros(len(self.params), dtype=np.int64)
        self.views = {name: _views(arena, shapes) for name, arena in (
            ("data", self.arena), ("grad", self.grads), ("state1", self.state1),
            ("state2", self.state2)) if arena.size}
        self.offsets = {}
        pinfo, off = [], 0
        for p in self.params:
            self.offsets[id(p)] = off
            rows, cols = (p.data.shape if p.data.ndim == 2 else (1, p.data.size))
            pinfo.append((off, p.data.size, rows, cols, int(p.decay),
                          int(constrained and p.decay and p.data.ndim == 2)))
            off += p.data.size
        self.pinfo = np.array(pinfo, dtype=np.int64).reshape(-1, _k.N_P)

    def _lay_out_buffers(self):
        """The private arena of the batch-norm running statistics (mean, var per layer)."""
        self.norms = [m for m in self.model if type(m) is BatchNorm1d]
        self.bufs = np.zeros(2 * sum(m.num_features for m in self.norms), self.dtype)
        self.buf_views = _views(self.bufs, [(m.num_features,) for m in self.norms for _ in "mv"])

    def _layer_row(self, layer, fused, width, aux):
        """(ops row, fops row, slope, output width) of one planned layer; ``width`` its input's.

        ``fused``: the activation layer this Linear absorbs (Sequential's
        fusion plan), or None.
        """
        row = [0] * _k.N_OP
        frow = [0.0] * _k.N_F
        slope, out = 0.01, width
        if type(layer) is Linear:
            if layer.in_features != width:
                raise NotCompilable(f"a Linear expects {layer.in_features} inputs, gets {width}")
            act = fused if fused is not None else layer
            name = fused.fused_name if fused is not None else layer.activation
            row[_k.OP_KIND], row[_k.OP_ACT] = _k.LINEAR, ACTIVATIONS[name]
            slope = act.negative_slope
            row[_k.OP_W] = self.offsets[id(layer.weight)]
            row[_k.OP_B] = -1 if layer.bias is None else self.offsets[id(layer.bias)]
            out = layer.out_features
        elif type(layer) is BatchNorm1d:
            if layer.num_features != width:
                raise NotCompilable(f"a BatchNorm1d expects {layer.num_features} features, "
                                    f"gets {width}")
            row[_k.OP_KIND] = _k.BATCHNORM
            row[_k.OP_W] = self.offsets[id(layer.weight)]
            row[_k.OP_B] = self.offsets[id(layer.bias)]
            row[_k.OP_AUX] = aux
            frow[_k.F_MOMENTUM], frow[_k.F_EPS] = layer.momentum, layer.eps
        elif type(layer) is LayerNorm:
            if layer.normalized_shape != (width,):
                raise NotCompilable(f"a LayerNorm expects {layer.normalized_shape[0]} features, "
                                    f"gets {width}")
            row[_k.OP_KIND], row[_k.OP_AUX] = _k.LAYERNORM, aux
            row[_k.OP_W] = -1 if layer.weight is None else self.offsets[id(layer.weight)]
            row[_k.OP_B] = -1 if layer.bias is None else self.offsets[id(layer.bias)]
            frow[_k.F_EPS] = layer.eps
        elif type(layer) is Dropout:
            row[_k.OP_KIND], row[_k.OP_AUX] = _k.DROPOUT, aux
            frow[_k.F_P], frow[_k.F_THRESHOLD] = layer.p, float(keep_threshold(layer.p))
            frow[_k.F_SCALE] = float(survivor_scale(layer.p, self.dtype))
        else:
            row[_k.OP_KIND], row[_k.OP_ACT] = _k.ACTIVATION, ACTIVATIONS[layer.fused_name]
            slope = layer.negative_slope
        row[_k.OP_IN], row[_k.OP_OUT] = width, out
        return row, frow, slope, out

    def _build_ops(self, n_features):
        rows, frows, slopes, widths = [], [], [], [n_features]
        self.dropouts, bn_aux, ln_rows = [], 0, []
        for layer, fused in self.model.fusion_plan:
            aux = 0
            if type(layer) is BatchNorm1d:
                aux, bn_aux = bn_aux, bn_aux + 2 * layer.num_features
            elif type(layer) is LayerNorm:
                ln_rows.append(len(rows))
            elif type(layer) is Dropout and layer.p > 0:
                aux = len(self.dropouts)
                self.dropouts.append(layer)
            row, frow, slope, width = self._layer_row(layer, fused, widths[-1], aux)
            rows.append(row)
            frows.append(frow)
            slopes.append(slope)
            widths.append(width)
        offs = np.concatenate([[0], np.cumsum(np.array(widths) * self.max_batch)])
        for i, row in enumerate(rows):
            row[_k.OP_X], row[_k.OP_Y] = offs[i], offs[i + 1]
        # Each LayerNorm's per-row mean and invstd (2 x max_batch float64)
        # follow the batch norms' statistics in ``stats``.
        for k, i in enumerate(ln_rows):
            rows[i][_k.OP_AUX] = bn_aux + 2 * self.max_batch * k
        self.ops = np.array(rows, dtype=np.int64)
        self.fops = np.array(frows, dtype=np.float64)
        self.slopes = np.array(slopes, dtype=self.dtype)
        self.widths = widths
        self.acts = np.zeros(int(offs[-1]), dtype=self.dtype)
        self.stats = np.zeros(bn_aux + 2 * self.max_batch * len(ln_rows), dtype=np.float64)

    def _state_names(self):
        """The optimizer's per-parameter arrays the engine keeps (in state1, state2)."""
        if type(self.optimizer) is SGD:
            return ("momentum_buffer",) if self.optimizer.momentum else ()
        return ("exp_avg", "exp_avg_sq")

    def _settings(self):
        opt = self.optimizer
        l2, l1, max_norm = self.penalties
        o = np.zeros(_k.N_O)
        if type(opt) is SGD:
            o[_k.O_KIND], o[_k.O_MOMENTUM], o[_k.O_NESTEROV] = _k.SGD, opt.momentum, opt.nesterov
        else:
            o[_k.O_KIND], (o[_k.O_BETA1], o[_k.O_BETA2]) = _k.ADAM, opt.betas
            o[_k.O_EPS], o[_k.O_DECOUPLED] = opt.eps, type(opt) is AdamW
        o[_k.O_WD], o[_k.O_L2], o[_k.O_L1] = opt.weight_decay, l2, l1
        o[_k.O_MAXNORM] = 0.0 if max_norm is None else max_norm
        return o

    def load(self):
        """Copy the model's and optimizer's current values into the arenas.

        Parameters, batch-norm running statistics, optimizer state (step
        counts included) and hyperparameters: what Python code (a callback,
        ``load_state_dict``, ``p.data = ...``) may have changed since the
        last :meth:`store`.  Gradients are not read: every step overwrites them.

        Raises
        ------
        ValueError
            A parameter now holds an array of another shape or dtype.

        Examples
        --------
        >>> from fastnn import engine, nn, optim, train
        >>> model = nn.Sequential(nn.Linear(3, 2, rng=0))
        >>> plan = engine.Plan(model, optim.SGD(model.parameters(), lr=0.1), "mse", 3,
        ...                    train.batch_bounds(8, 4))
        >>> model[0].weight.data[...] = 0.0      # after the plan copied it in
        >>> plan.load()
        >>> bool(plan.arena[:6].any())           # the weight's 2 x 3 values come first
        False
        """
        for i, (p, view) in enumerate(zip(self.params, self.views["data"])):
            _take(view, p.data, lambda i=i: f"parameter {i} of the model")
        for m, mean, var in zip(self.norms, self.buf_views[::2], self.buf_views[1::2]):
            _take(mean, m.running_mean, lambda m=m: f"running_mean of {m!r}")
            _take(var, m.running_var, lambda m=m: f"running_var of {m!r}")
        names = self._state_names()
        arenas = [self.views[a] for a in ("state1", "state2")[:len(names)]]
        counts = []
        for i, state in enumerate(self.optimizer.state):
            # a parameter without state starts afresh (SGD: its first momentum step)
            counts.append(state.get("step", 1) if names and names[0] in state else 0)
            for name, views in zip(names, arenas):
                views[i][...] = state[name] if name in state else 0.0
        self.tcount[:] = counts
        self.opt = self._settings()
        self._ahead = False     # the arenas hold nothing the objects lack

    def store(self):
        """Write what the arenas learned back into the model's and optimizer's own arrays.

        In place (``arr[...] = view``): ``Parameter.data``, ``.grad`` and the
        running statistics keep their identity.  A gradient or optimizer
        state array that is None (or cannot take the values) becomes a
        copy; nothing the objects hold shares memory with the plan.  Also
        the step counts and the dropout layers' last seeds.  Does nothing
        when no step ran since the last :meth:`load` (so it never overwrites
        what Python code changed in between).

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn import engine, nn, optim, train
        >>> X = np.arange(24, dtype=np.float32).reshape(8, 3) / 24
        >>> model = nn.Sequential(nn.Linear(3, 1, rng=0))
        >>> weight = model[0].weight.data
        >>> plan = engine.Plan(model, optim.SGD(model.parameters(), lr=0.1), "mse", 3,
        ...                    train.batch_bounds(8, 4))
        >>> plan.epoch(X, X[:, :1].copy(), np.arange(8), np.full(2, 0.1), plan.draw_seeds(2))
        2
        >>> plan.store()
        >>> model[0].weight.data is weight and np.array_equal(weight.ravel(), plan.arena[:3])
        True
        """
        if not self._ahead:
            return
        names = self._state_names()
        arenas = [self.views[a] for a in ("state1", "state2")[:len(names)]]
        counts = self.tcount.tolist() if type(self.optimizer) is not SGD else None
        for i, (p, state) in enumerate(zip(self.params, self.optimizer.state)):
            p.data[...] = self.views["data"][i]
            p.grad = _write_back(p.grad, self.views["grad"][i])
            for name, views in zip(names, arenas):
                state[name] = _write_back(state.get(name), views[i])
            if counts is not None:
                state["step"] = counts[i]
        for m, mean, var in zip(self.norms, self.buf_views[::2], self.buf_views[1::2]):
            m.running_mean[...] = mean
            m.running_var[...] = var
        for layer, seed in zip(self.dropouts, self._last_seeds.tolist()):
            layer.seed = seed
        self._ahead = False

    def _workspace(self):
        b, dt = self.max_batch, self.dtype
        wide = max(self.widths)
        self.g0 = np.zeros(b * wide, dt)
        self.g1 = np.zeros(b * wide, dt)
        self.partial = np.zeros((1, wide))
        self.bn_dw = np.zeros(wide, dt)
        self.bn_db = np.zeros(wide, dt)
        self.zeros = np.zeros(wide, dt)
        self.ce_weight = np.ones(self.widths[-1], dt)
        self.tb = np.zeros(b, np.int64)
        self.losses = np.zeros(b * self.widths[-1])     # per-sample (or per-output) losses
        self.wb = np.zeros(b)                           # the batch's sample weights
        l2, l1, _ = self.penalties
        # the penalties' gradients, before they are added to the parameters'
        decayed = [p.data.size for p in self.params if p.decay]
        self.scratch = np.zeros(max(decayed) if (l2 or l1) and decayed else 0, dt)
        self.saved_bufs = np.empty_like(self.bufs)
        k = self.starts.size - 1
        self.step_loss = np.zeros(k)
        self.step_correct = np.zeros(k, np.int64)
        self.step_penalty = np.zeros(k)
        self._last_seeds = None   # the seeds of the last step run (None: no step yet)

    def draw_seeds(self, n_steps):
        """The dropout seeds of ``n_steps`` steps, drawn as Dropout.forward draws them
        (:meth:`fastnn.nn.Dropout.draw_seed`), from each active layer's own generator."""
        seeds = np.zeros((n_steps, max(1, len(self.dropouts))), dtype=np.int64)
        for j, layer in enumerate(self.dropouts):
            for s in range(n_steps):
                seeds[s, j] = layer.draw_seed()
        return seeds

    def epoch(self, X, y, order, lrs, seeds, sample_weight=None):
        """Run one epoch; returns the number of steps done (fewer: a non-finite loss).

        ``X`` (N, n_features) C-contiguous of the model's dtype, ``y`` int64
        labels (N,) or targets (N, outputs) of the model's dtype, ``order``
        the epoch's row permutation (int64), ``lrs`` one learning rate per
        step, ``seeds`` from :meth:`draw_seeds`.  Per-step results are in
        ``step_loss``, ``step_correct`` and ``step_penalty``.
        ``sample_weight``: float64 (N,) weights (see ``fastnn.train.fit``), or None.
        """
        sw = _NO_WEIGHTS if sample_weight is None else sample_weight
        # the dropout kernels' stream keys, derived as the layers' launcher derives them
        keys = (np.array([[seed_key(v) for v in row] for row in seeds.tolist()], np.uint64)
                if self.dropouts else np.zeros(seeds.shape, np.uint64))
        if y.ndim == 1:
            y_cls, y_reg = y, np.empty((0, 0), self.dtype)
        else:
            y_cls, y_reg = np.empty(0, np.int64), y
        done = _k.train_epoch(
            X, y_cls, y_reg, order, self.starts, lrs, keys, self.ops, self.fops, self.slopes,
            self.arena, self.grads, self.state1, self.state2, self.pinfo, self.tcount, self.opt,
            self.loss_code, self.acts, self.bufs, self.saved_bufs, self.stats, self.g0, self.g1,
            self.partial, self.bn_dw, self.bn_db, self.zeros, self.ce_weight, self.tb,
            self.losses, self.wb, self.scratch, self.step_loss, self.step_correct,
            self.step_penalty, sw, 1)
        if done:
            self._last_seeds = seeds[done - 1]
            self._ahead = True
        return done
