"""Optimizers and learning-rate schedules.

The update rules, including where ``eps`` goes and how weight decay enters,
are torch's (``torch.optim.SGD``, ``Adam``, ``AdamW``), so a fastnn model and
a torch model given the same gradients take the same steps.  One difference
by design: weight decay applies only to parameters whose ``decay`` flag is
True, which by default excludes biases and batch-norm scale/shift.

Each update rule is written ONCE, as a plain per-element function
(:func:`fastnn._cpu.optim.sgd_rule`, :func:`~fastnn._cpu.optim.adam_rule`, float64 in
and out; importable from here too).  The CPU backend
compiles it with numba into one fused loop per parameter (no temporaries);
for parameters on the GPU (``model.to("cuda")``) the same function is
compiled as a CUDA device function into one fused kernel per parameter
(:mod:`fastnn._cuda.optim`), with the optimizer state on the device.  An
optimizer holds no device code: each step asks the backend of the parameter
(``sgd_step``, ``adam_step``, ``zeros_like``, the same signatures on both).  As in
torch, move the model BEFORE building its optimizer: the state lives where
the parameters were at the first step, and a parameter that moves later is
refused with a RuntimeError.

``state_dict()`` / ``load_state_dict()`` save and restore the
hyperparameters and the per-parameter state (copies, torch's layout): with
``Module.save`` / ``load`` and ``fit(..., initial_epoch=k)``, a run resumes
exactly where it stopped.

Schedules are callables ``step -> lr`` (``step`` counts optimizer steps from
0); :func:`fastnn.train.fit` sets ``optimizer.lr = schedule(step)`` before
each step.

Examples
--------
>>> from fastnn import nn, optim
>>> model = nn.Sequential(nn.Linear(4, 3, rng=0))
>>> opt = optim.Adam(model.parameters(), lr=1e-3)
>>> sched = optim.warmup_cosine(1e-3, warmup_steps=10, total_steps=100)
>>> sched(10)
0.001
"""
import math

import numpy as np

from fastnn._backend import backend_of, host_copy, on_device, to_device
from fastnn._cpu.optim import (  # noqa: F401  (the rules are importable from here, see above)
    adam_corrections,
    adam_rule,
    sgd_rule,
)
from fastnn._validation import boolean, integer, real_scalar

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Schedule", "constant", "step_decay",
           "warmup_cosine"]


class Optimizer:
    """Base class: holds the parameters and the current learning rate ``lr``.

    ``lr`` is a plain attribute; a schedule (or you) may change it between
    steps.  Parameters whose ``grad`` is None are skipped by :meth:`step`.

    The parameters must all be on one device (all host arrays, or all on the
    GPU after ``model.to("cuda")``); the state buffers are allocated there at
    the first step.

    Raises
    ------
    ValueError
        An empty list, a parameter given twice, or parameters on different
        devices (move the whole model first, then build the optimizer).
    TypeError
        Something that is not a :class:`fastnn.nn.Parameter`.
    """

    #: the hyperparameters :meth:`state_dict` saves (attributes, and ``__init__`` arguments)
    _hyperparameters = ("lr",)
    #: the per-parameter state entries (all present, or none: a fresh parameter)
    _state_keys = ()

    def __init__(self, params, lr):
        from fastnn.nn import Parameter

        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] is a {type(p).__name__}, not a fastnn.nn.Parameter "
                                "(pass model.parameters())")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("optimizer got the same parameter twice")
        where = [on_device(p.data) for p in self.params]
        if any(where) and not all(where):
            i, j = where.index(False), where.index(True)
            raise ValueError(f"optimizer got parameters on different devices (params[{i}] on "
                             f"the cpu, params[{j}] on cuda); move the whole model with "
                             "model.to(device) before building the optimizer")
        self.lr = real_scalar(lr, "lr", low=0.0)
        self.state = [dict() for _ in self.params]

    def _checked_hyperparameters(self, values):
        """{name: checked value} of the hyperparameters in ``values`` (the __init__ checks)."""
        return {"lr": real_scalar(values["lr"], "lr", low=0.0)}

    def state_dict(self):
        """The hyperparameters and per-parameter state, as copies, shaped as torch's.

        Returns
        -------
        dict
            ``{"state": {i: {name: value}}, "param_groups": [group]}``: ``i``
            indexes ``params`` (only parameters with state appear), each
            array a host numpy copy (also for a model on the GPU, as
            ``Module.state_dict``), ``"step"`` an int; ``group`` holds the
            hyperparameters (``lr``, ...) and ``"params"``: ``[0, 1, ...]``.
            Nothing in it shares memory with the optimizer.

        Examples
        --------
        >>> from fastnn import nn, optim
        >>> opt = optim.SGD(nn.Linear(3, 2, rng=0).parameters(), lr=0.1, momentum=0.9)
        >>> opt.state_dict()["param_groups"]
        [{'lr': 0.1, 'momentum': 0.9, 'nesterov': False, 'weight_decay': 0.0, 'params': [0, 1]}]
        """
        state = {i: {k: _host_copy(v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        group = {name: getattr(self, name) for name in self._hyperparameters}
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Load what :meth:`state_dict` returned (of an optimizer of the same kind).

        Everything is checked before anything changes, so a refused state
        leaves the optimizer as it was.  Arrays are copied (converted to
        each parameter's dtype, onto its device), never kept.

        Parameters
        ----------
        state_dict : dict
            ``{"state": ..., "param_groups": [...]}`` as :meth:`state_dict`
            returns it: one group, one entry per parameter of this optimizer,
            the same hyperparameter names.

        Returns
        -------
        self

        Raises
        ------
        KeyError
            Missing or unexpected keys (named).
        ValueError
            Another number of parameters, a state array whose shape differs
            from its parameter's or that does not hold real numbers, values
            the parameter's dtype cannot hold, a hyperparameter out of range.
        TypeError
            A value of the wrong type (the message names it).

        Examples
        --------
        >>> from fastnn import nn, optim
        >>> model = nn.Linear(3, 2, rng=0)
        >>> saved = optim.Adam(model.parameters(), lr=0.01).state_dict()
        >>> optim.Adam(model.parameters()).load_state_dict(saved).lr
        0.01
        """
        group = _single_group(state_dict, len(self.params))
        _check_keys(group, set(self._hyperparameters) | {"params"}, "param_groups[0]")
        hyper = self._checked_hyperparameters(group)
        entries = state_dict["state"]
        if not isinstance(entries, dict):
            raise TypeError(f"state_dict['state'] must be a dict, got {type(entries).__name__}")
        odd = sorted(repr(i) for i in entries if i not in range(len(self.params)))
        if odd:
            raise KeyError(f"state_dict['state'] has entries {', '.join(odd)} for an optimizer "
                           f"of {len(self.params)} parameters")
        state = [self._checked_state(i, entries[i]) if i in entries else {}
                 for i in range(len(self.params))]
        vars(self).update(hyper)
        self.state = state
        return self

    def _checked_state(self, i, entry):
        """Parameter i's state entry as new arrays on its device (ValueError naming the fault)."""
        where = f"state[{i}]"
        if not isinstance(entry, dict):
            raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
        if not entry:
            return {}
        _check_keys(entry, set(self._state_keys), where)
        p, out = self.params[i], {}
        for key, value in entry.items():
            if key == "step":
                out[key] = integer(value, f"{where}['step']", low=0)
                continue
            if on_device(value):
                raise TypeError(f"{where}[{key!r}] is a GPU array; state dicts hold host numpy "
                                "arrays (copy it to the host first)")
            value = np.asarray(value)
            if value.dtype.kind not in "fiu":
                raise ValueError(f"{where}[{key!r}] must hold real numbers, got dtype "
                                 f"{value.dtype}")
            if value.shape != tuple(p.data.shape):
                raise ValueError(f"{where}[{key!r}] has shape {value.shape}, params[{i}] has "
                                 f"{tuple(p.data.shape)}")
            with np.errstate(over="ignore"):      # refused just below, with its name
                out[key] = np.array(value, dtype=p.data.dtype)   # a copy, never the caller's
            if not np.array_equal(np.isfinite(out[key]), np.isfinite(value)):
                raise ValueError(f"{where}[{key!r}] holds values beyond the range of "
                                 f"params[{i}]'s {p.data.dtype} (they would become inf)")
        return {k: to_device(v, p.device) if k != "step" else v for k, v in out.items()}

    def zero_grad(self):
        """Reset every parameter's gradient to None."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place.

        Raises
        ------
        ValueError
            A gradient whose shape differs from its parameter's.
        RuntimeError
            A gradient, or optimizer state, on another device than its
            parameter (the model was moved after the optimizer's first step).
        """
        for i, (p, state) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            gpu = on_device(p.data)
            if tuple(p.grad.shape) != tuple(p.data.shape):
                raise ValueError(f"params[{i}].grad has shape {tuple(p.grad.shape)}, the "
                                 f"parameter {tuple(p.data.shape)}")
            moved = [k for k, a in state.items() if hasattr(a, "shape") and on_device(a) != gpu]
            if on_device(p.grad) != gpu or moved:
                where = "cuda" if gpu else "cpu"
                raise RuntimeError(
                    f"params[{i}] is on the {where} but its "
                    + ("optimizer state" if moved else "grad")
                    + f" is not; build the optimizer after model.to({where!r})")
            self._update(p, p.grad, state, backend_of(p.data))

    def _update(self, p, grad, state, backend):
        raise NotImplementedError

    def _decay(self, p):
        return self.weight_decay if p.decay else 0.0


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float >= 0
    momentum : float >= 0
    nesterov : bool
        Nesterov momentum (requires momentum > 0).
    weight_decay : float >= 0
        Coupled L2 decay, added to the gradient of parameters with ``decay``.

    Raises
    ------
    ValueError
        A negative hyperparameter, or ``nesterov`` without momentum.

    Notes
    -----
    As torch (dampening 0)::

        g = grad + weight_decay * w
        b = g                   (first step)    b = momentum * b + g   (later)
        g = g + momentum * b    (nesterov)      g = b                  (otherwise)
        w = w - lr * g
    """

    _hyperparameters = ("lr", "momentum", "nesterov", "weight_decay")
    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        vars(self).update(self._checked_hyperparameters(
            {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}))

    def _checked_hyperparameters(self, values):
        out = super()._checked_hyperparameters(values)
        out["momentum"] = real_scalar(values["momentum"], "momentum", low=0.0)
        out["nesterov"] = boolean(values["nesterov"], "nesterov")
        out["weight_decay"] = real_scalar(values["weight_decay"], "weight_decay", low=0.0)
        if out["nesterov"] and out["momentum"] == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        return out

    def _update(self, p, grad, state, backend):
        buf, first = None, False
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = backend.zeros_like(p.data)
                first = True
        backend.sgd_step(p.data, grad, buf, self.lr, self._decay(p), self.momentum,
                         self.nesterov, first)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's update, eps outside the square root.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float >= 0
    betas : (float, float), each in [0, 1)
    eps : float >= 0
    weight_decay : float >= 0
        Coupled L2 decay (added to the gradient, as torch's Adam) for
        parameters with ``decay``.  For decoupled decay use :class:`AdamW`.

    Raises
    ------
    ValueError
        A hyperparameter out of range.

    Notes
    -----
    At step t (from 1)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        w = w - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    _decoupled = False
    _hyperparameters = ("lr", "betas", "eps", "weight_decay")
    _state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        vars(self).update(self._checked_hyperparameters(
            {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}))

    def _checked_hyperparameters(self, values):
        out = super()._checked_hyperparameters(values)
        try:
            b1, b2 = values["betas"]
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats, got {values['betas']!r}") from None
        out["betas"] = (real_scalar(b1, "betas[0]", low=0.0, high=1.0, high_open=True),
                        real_scalar(b2, "betas[1]", low=0.0, high=1.0, high_open=True))
        out["eps"] = real_scalar(values["eps"], "eps", low=0.0)
        out["weight_decay"] = real_scalar(values["weight_decay"], "weight_decay", low=0.0)
        return out

    def _update(self, p, grad, state, backend):
        b1, b2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = backend.zeros_like(p.data)
            state["exp_avg_sq"] = backend.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        bias1, bias2_sqrt = adam_corrections(b1, b2, t)
        backend.adam_step(p.data, grad, state["exp_avg"], state["exp_avg_sq"], self.lr, b1, b2,
                          bias1, bias2_sqrt, self.eps, self._decay(p), self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch's AdamW.

    Same parameters as :class:`Adam`; ``weight_decay`` defaults to 0.01 (as
    torch) and shrinks the weights directly, ``w = w * (1 - lr * weight_decay)``,
    before the Adam step, instead of entering the gradient.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _host_copy(value):
    """A host copy of a state value (an array: a plain ndarray; a step count: itself)."""
    if not hasattr(value, "shape"):
        return value
    return np.array(value) if isinstance(value, np.ndarray) else host_copy(value)


def _single_group(state_dict, n_params):
    """The one parameter group of an optimizer state dict over ``n_params`` parameters."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    _check_keys(state_dict, {"state", "param_groups"}, "state_dict")
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)) or len(groups) != 1 or not isinstance(groups[0],
                                                                                  dict):
        raise ValueError("state_dict['param_groups'] must be a list of one dict (fastnn "
                         "optimizers have one parameter group)")
    params = groups[0].get("params")
    if not isinstance(params, (list, tuple)) or list(params) != list(range(len(params))):
        raise ValueError("param_groups[0]['params'] must be [0, 1, ..., n - 1]")
    if len(params) != n_params:
        raise ValueError(f"the state is of an optimizer over {len(params)} parameters, this "
                         f"one has {n_params}")
    return groups[0]


def _check_keys(mapping, expected, where):
    missing = sorted(expected - set(mapping))
    unexpected = sorted(map(repr, set(mapping) - expected))
    if missing or unexpected:
        raise KeyError(f"{where} does not match the optimizer: missing {missing}, "
                       f"unexpected [{', '.join(unexpected)}]")


# -- schedules --------------------------------------------------------------
class Schedule:
    """A learning-rate schedule: call it with a step (int >= 0) to get the lr."""

    def __call__(self, step):
        return self._lr(integer(step, "step", low=0))

    def _lr(self, step):
        raise NotImplementedError


class constant(Schedule):
    """The same learning rate at every step."""

    def __init__(self, lr):
        self.lr = real_scalar(lr, "lr", low=0.0)

    def _lr(self, step):
        return self.lr

    def __repr__(self):
        return f"constant({self.lr})"


class step_decay(Schedule):
    """``lr * gamma ** (step // step_size)``: multiply by gamma every step_size steps.

    Parameters
    ----------
    lr : float >= 0
    step_size : int >= 1
        Optimizer steps between decays.
    gamma : float in [0, 1]
    """

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = real_scalar(lr, "lr", low=0.0)
        self.step_size = integer(step_size, "step_size", low=1)
        self.gamma = real_scalar(gamma, "gamma", low=0.0, high=1.0)

    def _lr(self, step):
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self):
        return f"step_decay({self.lr}, step_size={self.step_size}, gamma={self.gamma})"


class warmup_cosine(Schedule):
    """Linear warmup to ``peak_lr``, then cosine decay to ``end_lr``, then flat.

    Parameters
    ----------
    peak_lr : float >= 0
    warmup_steps : int >= 0
    total_steps : int >= warmup_steps, > 0
        The step at which the decay reaches ``end_lr``; later steps stay there
        (the schedule never climbs back).
    init_lr, end_lr : float >= 0

    Raises
    ------
    ValueError
        Negative rates or steps, or ``total_steps < warmup_steps``.

    Notes
    -----
    With w = warmup_steps and T = total_steps::

        lr(s) = init_lr + (peak_lr - init_lr) * s / w                     s < w
        lr(s) = end_lr + (peak_lr - end_lr) * (1 + cos(pi (s - w) / (T - w))) / 2
                                                                            w <= s <= T
        lr(s) = end_lr                                                      s >= T

    so lr(w) = peak_lr exactly (when T > w) and lr(T) = end_lr.

    Examples
    --------
    >>> s = warmup_cosine(1.0, warmup_steps=2, total_steps=6)
    >>> [round(s(i), 3) for i in range(8)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """

    def __init__(self, peak_lr, warmup_steps, total_steps, init_lr=0.0, end_lr=0.0):
        self.peak_lr = real_scalar(peak_lr, "peak_lr", low=0.0)
        self.init_lr = real_scalar(init_lr, "init_lr", low=0.0)
        self.end_lr = real_scalar(end_lr, "end_lr", low=0.0)
        self.warmup_steps = integer(warmup_steps, "warmup_steps", low=0)
        self.total_steps = integer(total_steps, "total_steps", low=1)
        if self.total_steps < self.warmup_steps:
            raise ValueError(f"total_steps ({self.total_steps}) must be >= warmup_steps "
                             f"({self.warmup_steps})")

    def _lr(self, step):
        w, T = self.warmup_steps, self.total_steps
        if step < w:
            return self.init_lr + (self.peak_lr - self.init_lr) * step / w
        if step >= T:
            return self.end_lr
        frac = (step - w) / (T - w)
        return self.end_lr + (self.peak_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def __repr__(self):
        return (f"warmup_cosine({self.peak_lr}, warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}, init_lr={self.init_lr}, end_lr={self.end_lr})")
