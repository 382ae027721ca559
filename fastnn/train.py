"""The fit loop, and prediction / evaluation helpers.

Examples
--------
>>> import numpy as np
>>> from fastnn import nn, optim, train
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((200, 4)).astype(np.float32)
>>> y = (X[:, 0] > 0).astype(np.int64)
>>> model = nn.Sequential(nn.Linear(4, 16, rng=0), nn.ReLU(), nn.Linear(16, 2, rng=1))
>>> hist = train.fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-2),
...                  epochs=5, batch_size=32, rng=0, progress=False)
>>> len(hist["train_loss"])
5

A model moved to the GPU (``model.to("cuda")``) trains and predicts with
the same calls and the same host (numpy) X and y: every batch is gathered on
the host (after shuffling) and copied to the device, so X may be larger than
the GPU's memory; outputs come back as host arrays.

``as_inputs``, ``as_targets`` and ``LOSS_WITH_GRAD`` are internals shared
with :mod:`fastnn.diagnostics` (not part of ``__all__``).
"""
import contextlib
import functools
import math

import numpy as np

import fastnn.functional as F
from fastnn._backend import (
    assign as _assign,
    copy as _copy,
    host_copy as _to_host,
    on_device,
    to_device as _move,
)
from fastnn._validation import as_rng, check_choice, class_labels, integer, real_scalar
from fastnn.callbacks import ProgressBar, as_callbacks
from fastnn.nn import Dropout, Sigmoid

__all__ = ["fit", "fit_many", "predict", "predict_proba", "evaluate", "steps_per_epoch",
           "batch_bounds", "DivergenceError", "LOSSES"]

LOSSES = ("cross_entropy", "hinge", "mse", "mae", "binary_cross_entropy")
CLASSIFICATION = ("cross_entropy", "hinge")
_BCE = "binary_cross_entropy"
# Losses whose history has an accuracy: class indices (argmax), and BCE's 0/1
# labels (subset accuracy: every label of the sample right).
_WITH_ACCURACY = CLASSIFICATION + (_BCE,)
_LOSS_VALUE = {
    "cross_entropy": lambda out, y: F.cross_entropy(out, y),
    "hinge": lambda out, y: F.hinge_loss(out, y),
    "mse": lambda out, y: F.mse_loss(out, y),
    "mae": lambda out, y: F.l1_loss(out, y),
    _BCE: lambda out, y: F.binary_cross_entropy_with_logits(out, y),
}
#: loss name -> fused ``(value, gradient)`` function (what a training step calls).
LOSS_WITH_GRAD = {
    "cross_entropy": lambda out, y: F.cross_entropy_with_grad(out, y),
    "hinge": lambda out, y: F.hinge_loss_with_grad(out, y),
    "mse": lambda out, y: F.mse_loss_with_grad(out, y),
    "mae": lambda out, y: F.l1_loss_with_grad(out, y),
    _BCE: lambda out, y: F.binary_cross_entropy_with_logits_with_grad(out, y),
}


#: loss name -> ``(per-sample values, gradient of their sum)`` (weighted steps).
LOSS_WITH_GRAD_NONE = {
    "cross_entropy": lambda out, y: F.cross_entropy_with_grad(out, y, reduction="none"),
    "hinge": lambda out, y: F.hinge_loss_with_grad(out, y, reduction="none"),
    "mse": lambda out, y: F.mse_loss_with_grad(out, y, reduction="none"),
    "mae": lambda out, y: F.l1_loss_with_grad(out, y, reduction="none"),
    _BCE: lambda out, y: F.binary_cross_entropy_with_logits_with_grad(out, y, reduction="none"),
}


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss.

    Attributes
    ----------
    epoch : int
        1-based epoch of the bad step.
    step : int
        1-based step within that epoch.
    global_step : int
        0-based count of optimizer steps taken before it.
    loss : float
        The non-finite loss.
    history : dict
        The history up to the last completed epoch.
    """

    def __init__(self, epoch, step, steps_in_epoch, global_step, loss, history):
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.loss, self.history = loss, history
        super().__init__(
            f"training diverged at epoch {epoch}, step {step}/{steps_in_epoch} "
            f"(global step {global_step}): the loss is {loss}. Lower the learning rate, "
            "check the inputs for NaN/inf, or standardize the data.")


def steps_per_epoch(n_samples, batch_size):
    """Optimizer steps per epoch taken by :func:`fit` (to size a schedule).

    ``ceil(n_samples / batch_size)``, except that a last batch of one sample
    is merged into the one before it (batch norm cannot train on one sample).
    """
    n = integer(n_samples, "n_samples", low=0)
    b = integer(batch_size, "batch_size", low=1)
    k = math.ceil(n / b)
    return k - 1 if k > 1 and n % b == 1 else k


def batch_bounds(n_samples, batch_size):
    """``[(start, stop), ...]`` of the batches :func:`fit` cuts an epoch of ``n_samples`` into.

    :func:`steps_per_epoch` of them, each ``batch_size`` long except the
    last, which runs to ``n_samples`` (one sample left over joins it).
    """
    n = n_samples
    k = steps_per_epoch(n, batch_size)
    return [(i * batch_size, n if i == k - 1 else (i + 1) * batch_size) for i in range(k)]


def _model_dtype(model):
    params = model.parameters()
    return params[0].data.dtype if params else np.dtype(np.float32)


def _host(a):
    """``a`` itself if it is a host array, else a host copy of the device array."""
    return a if type(a) is np.ndarray else _to_host(a)


def as_inputs(model, X, name="X"):
    """X as a C-contiguous 2-D array of the model's dtype (ints and float64 converted).

    Raises TypeError for non-real dtypes and for GPU arrays (these functions
    take host data, whatever the model's device), ValueError for a shape
    that is not 2-D; ``name`` is the argument's name in the messages.
    """
    if on_device(X):
        raise TypeError(f"{name} is a GPU array; fit / predict / evaluate take host (numpy) "
                        "data and copy each batch to the model's device themselves")
    arr = np.asarray(X)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    width = _input_width(model)
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"{name} has {arr.shape[1]} features (shape {arr.shape}) but the "
                         f"model expects {width}")
    return np.ascontiguousarray(arr, dtype=_model_dtype(model))


def _input_width(model):
    """Features the first layer to see X takes, or None when it cannot say.

    Walks the forward order: through Sequentials, past the width-agnostic
    layers (activations, Dropout), to the first Linear (``in_features``) or
    BatchNorm1d (``num_features``); any other module (a custom one) ends the
    walk with None, and the forward pass itself then judges X.
    """
    from fastnn import nn
    agnostic = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout)
    pending = [model]
    while pending:
        module = pending.pop(0)
        if isinstance(module, nn.Linear):
            return module.in_features
        if isinstance(module, nn.BatchNorm1d):
            return module.num_features
        if isinstance(module, nn.Sequential):
            pending[:0] = list(module)
        elif not isinstance(module, agnostic):
            return None
    return None


def _output_width(model, X):
    """Columns of the model's output, from an eval-mode pass on one row (changes nothing)."""
    return model.infer(_move(X[:1], model.device)).shape[1]


def as_targets(model, X, y, loss, name="y"):
    """y checked against ``as_inputs(model, X)`` for ``loss`` (one of :data:`LOSSES`).

    Classification: class indices (N,) checked by ``class_labels`` against
    the model's output width.  Regression: a C-contiguous (N, n_outputs) array of the model's
    dtype ((N,) becomes (N, 1)); "binary_cross_entropy" as regression, with
    every target in [0, 1].  The output width comes from one eval-mode
    forward pass on the first row, which leaves the model as it was.
    """
    if on_device(y):
        raise TypeError(f"{name} is a GPU array; pass host (numpy) targets")
    if loss in CLASSIFICATION:
        return class_labels(y, X.shape[0], _output_width(model, X), name=name)
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] != X.shape[0]:
        raise ValueError(f"{name} must have shape ({X.shape[0]},) or ({X.shape[0]}, n_outputs), "
                         f"got {np.shape(y)}")
    width = _output_width(model, X)
    if arr.shape[1] != width:
        raise ValueError(f"{name} has {arr.shape[1]} column(s) but the model outputs {width}")
    if loss == _BCE:
        bad = np.argwhere(~((arr >= 0) & (arr <= 1)))
        if bad.size:
            i, j = bad[0]
            raise ValueError(f"{name} must hold probabilities in [0, 1] for "
                             f"binary_cross_entropy; {name}[{i}, {j}] = {arr[i, j]}")
    return np.ascontiguousarray(arr, dtype=_model_dtype(model))


def fit(model, X, y, loss="cross_entropy", optimizer=None, epochs=10, batch_size=32,
        schedule=None, validation=None, shuffle=True, rng=None, progress=True,
        l2=0.0, l1=0.0, max_norm=None, engine="auto", sample_weight=None, callbacks=None,
        initial_epoch=0):
    """Train ``model`` on (X, y) with mini-batch gradient descent.

    Parameters
    ----------
    model : fastnn.nn.Module
        Put in training mode for the run (and left in it).
    X : array_like, shape (N, in_features)
        Converted to the model's dtype (integer pixels are fine).
    y : array_like
        Class indices (N,) for "cross_entropy" / "hinge"; targets (N,) or
        (N, n_outputs) for "mse" / "mae"; for "binary_cross_entropy", targets
        in [0, 1] of the same shapes (0/1 indicators of the labels, one
        output per label; (N,) is one label).
    loss : {"cross_entropy", "hinge", "mse", "mae", "binary_cross_entropy"}
        Mean over the batch (over all elements for mse/mae and
        binary_cross_entropy, the sigmoid cross-entropy of each output:
        ``F.binary_cross_entropy_with_logits``).
    optimizer : fastnn.optim.Optimizer, optional
        Default: ``Adam(model.parameters(), lr=1e-3)``.
    epochs : int >= 0
        The epoch training ends with (with ``initial_epoch`` 0, the number
        of epochs).
    batch_size : int >= 1
        A last batch of one sample is merged into the previous batch
        (see :func:`steps_per_epoch`).
    schedule : callable step -> lr, optional
        Called before every optimizer step with the 0-based global step;
        its value is assigned to ``optimizer.lr``.
    validation : (X_val, y_val), optional
        Evaluated (eval mode) after every epoch.
    shuffle : bool
        Reshuffle the samples every epoch.
    rng : int, numpy.random.Generator or None
        Drives the shuffling and the dropout seeds: every Dropout layer gets
        its own generator derived from it, so a run is deterministic for a
        given seed (and a given model initialization).
    progress : bool
        A tqdm bar over epochs when tqdm is installed and stderr is a terminal
        (a :class:`fastnn.callbacks.ProgressBar` put first in the callbacks).
    l2, l1 : float >= 0
        Finite penalties ``l2 * sum(w**2)`` and ``l1 * sum(|w|)`` over the
        parameters with ``decay`` (Linear weights), added to the gradient
        (``F.l2_penalty``, ``F.l1_penalty``).
    max_norm : float > 0, optional
        After every step, rescale each neuron's incoming weight vector (each
        row of a 2-D ``decay`` parameter) to norm ``max_norm`` if it is longer
        (``F.max_norm_``).
    engine : {"auto", "compiled", "layers"}
        "compiled" runs each epoch as one numba call (:mod:`fastnn.engine`:
        a CPU ``nn.Sequential`` of Linear, activation, BatchNorm1d and
        Dropout layers with SGD, Adam or AdamW; ValueError naming the
        obstacle otherwise); "layers" calls the layers one by one (the
        reference); "auto" takes the compiled engine when it can.  Both
        compute the same steps (same shuffles, dropout masks and update
        rules), equal to rounding.
    sample_weight : array_like of shape (N,), optional
        Non-negative finite weights (a batch whose weights are all zero
        takes a step with zero data gradient).  Each batch's loss becomes
        the weighted mean of its per-sample losses,
        ``sum(w_i * l_i) / sum(w_i)`` over the batch (a sample's loss is the
        mean over its outputs for mse, mae and binary_cross_entropy), as
        scikit-learn weights its MLP losses; unit weights give the unweighted
        run.  CPU models only; both engines.
    callbacks : list, optional
        :class:`fastnn.callbacks.Callback` objects (train begin, epoch end,
        train end events; :class:`~fastnn.callbacks.EarlyStopping` is one)
        or plain callables ``f(history) -> bool`` called after every epoch
        (after its validation) with the history so far.  A true return from
        an epoch end ends training there.  A callback may change
        ``optimizer.lr`` for the next epoch (when no ``schedule`` is given)
        and read, copy or change the model's and optimizer's values (not
        train it): both engines show it the epoch's values in the arrays
        the model held before the fit, and train the next epoch from what
        it leaves (``p.data = new_array`` included).  One ``fit`` call with
        callbacks replaces one call per epoch, which re-plans the compiled
        engine each time.
    initial_epoch : int, 0 <= initial_epoch <= epochs
        Resume a run: train its epochs ``initial_epoch + 1`` to ``epochs``
        (numbered so in the history), taking the shuffles, dropout masks
        and schedule steps that ``fit(..., epochs=epochs)`` with the same
        int ``rng`` takes there (the generators are advanced past the
        skipped epochs).  With the model and optimizer restored from the
        run's state after epoch ``initial_epoch`` (``Module.save`` /
        ``load`` or ``state_dict``, ``Optimizer.state_dict`` /
        ``load_state_dict``), the result equals the uninterrupted run's.

    Returns
    -------
    history : dict of lists, one entry per epoch
        "epoch" (1-based), "train_loss" (mean data loss over the epoch's
        batches, without the penalties), "penalty" (mean L1+L2 penalty), "lr"
        (at the epoch's last step), "train_accuracy" (classification and
        binary_cross_entropy, where a sample is right when all its labels
        are, logit > 0 meaning 1; on the training batches as they were
        trained), and with ``validation``: "val_loss" and, for these losses,
        "val_accuracy".  Also
        "step_loss": the data loss of every step (one entry per step), and
        "engine": "compiled", or "layers (<why>)" (a string, not a list).

    Raises
    ------
    DivergenceError
        A NaN or infinite loss; the message names the epoch and step, and the
        exception carries the history so far.
    ValueError, TypeError, IndexError
        Bad arguments, mismatched shapes, labels out of range.

    Notes
    -----
    Each step: forward in training mode, loss and its gradient in one fused
    call, ``model.backward``, penalty gradients added, ``optimizer.step()``,
    then the max-norm constraint.

    With the model on the GPU (build the optimizer after ``model.to("cuda")``)
    every step runs there: the batch (X and y rows, gathered on the host) is
    copied to the device, and only the loss (a float) and, for the
    accuracy of classification losses, the batch's outputs come back.
    """
    loss, engine, epochs, batch_size, l2, l1, max_norm = _check_options(
        loss, engine, epochs, batch_size, l2, l1, max_norm, schedule)
    initial_epoch = integer(initial_epoch, "initial_epoch", low=0, high=epochs)
    callbacks = ([ProgressBar(epochs - initial_epoch)] if progress else []) + as_callbacks(
        callbacks)
    X, y, sample_weight, validation = _check_data(model, X, y, loss, sample_weight, validation)
    optimizer = _check_optimizer(model, optimizer)
    rng = as_rng(rng)
    for layer in model.modules():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(rng.integers(2 ** 63))
    history = _new_history(loss, validation is not None)
    batches = batch_bounds(X.shape[0], batch_size)
    _skip_epochs(model, rng, initial_epoch, X.shape[0], len(batches), shuffle)
    plan, reason = _choose_engine(engine, model, optimizer, loss, X, batches, l2, l1, max_norm)
    history["engine"] = "compiled" if plan is not None else f"layers ({reason})"
    if plan is not None:
        # Python code that may look at the model between epochs: the engine's arenas
        # are stored before it runs and loaded after (a ProgressBar reads the history only).
        boundaries = validation is not None or any(type(cb) is not ProgressBar
                                                   for cb in callbacks)
        run_epoch = functools.partial(_compiled_epoch, plan, boundaries, X, y, schedule,
                                      optimizer, sample_weight, batches)
    else:
        run_epoch = functools.partial(
            _keeping_grads, model.parameters(),
            functools.partial(_layers_epoch, model, X, y, loss, optimizer, schedule, l2, l1,
                              max_norm, sample_weight, batches))
    with contextlib.ExitStack() as stack:
        if plan is not None:
            from fastnn.engine import one_blas_thread
            stack.callback(plan.store)      # the end of the fit, however it ends
            stack.enter_context(one_blas_thread())
        _run_epochs(model, run_epoch, len(batches), range(initial_epoch + 1, epochs + 1),
                    X.shape[0], shuffle, rng, optimizer, loss, validation, callbacks, history)
    return history


def _skip_epochs(model, rng, n_epochs, n, n_batches, shuffle):
    """Advance the run's generators past its first ``n_epochs`` epochs, as training would.

    An epoch draws one shuffle from ``rng`` and, per step, one seed from
    each active Dropout's generator (one ``integers`` call each: a call for
    many at once gives other numbers): drawing and dropping as many makes a
    resumed fit take the uninterrupted run's shuffles and masks.
    """
    if shuffle:
        for _ in range(n_epochs):
            rng.permutation(n)
    for layer in model.modules():
        if isinstance(layer, Dropout) and layer.p > 0:
            for _ in range(n_epochs * n_batches):
                layer.rng.integers(Dropout.SEED_BOUND)


def _check_options(loss, engine, epochs, batch_size, l2, l1, max_norm, schedule):
    """fit's scalar options, checked (ValueError / TypeError naming the argument)."""
    loss = check_choice(loss, "loss", LOSSES)
    engine = check_choice(engine, "engine", ENGINES)
    epochs = integer(epochs, "epochs", low=0)
    batch_size = integer(batch_size, "batch_size", low=1)
    l2 = real_scalar(l2, "l2", low=0.0, high=np.inf, high_open=True)
    l1 = real_scalar(l1, "l1", low=0.0, high=np.inf, high_open=True)
    if max_norm is not None:
        max_norm = real_scalar(max_norm, "max_norm", low=0.0, low_open=True)
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be a callable step -> lr, got {type(schedule).__name__}")
    return loss, engine, epochs, batch_size, l2, l1, max_norm


def _check_data(model, X, y, loss, sample_weight, validation):
    """(X, y, sample_weight, validation) checked and converted for the model."""
    X = as_inputs(model, X)
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    y = as_targets(model, X, y, loss)
    sample_weight = check_sample_weight(sample_weight, X.shape[0])
    if sample_weight is not None and model.device != "cpu":
        raise ValueError("sample_weight is supported for CPU models only (the model is on "
                         f"{model.device})")
    if validation is None:
        return X, y, sample_weight, None
    try:
        X_val, y_val = validation
    except (TypeError, ValueError):
        raise ValueError("validation must be a pair (X_val, y_val)") from None
    X_val = as_inputs(model, X_val, "X_val")
    if X_val.shape[0] == 0:
        raise ValueError("X_val has no samples")
    if X_val.shape[1] != X.shape[1]:
        raise ValueError(f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}")
    return X, y, sample_weight, (X_val, as_targets(model, X_val, y_val, loss, "y_val"))


def _check_optimizer(model, optimizer):
    """The optimizer fit uses: ``optimizer``, or a fresh ``Adam(lr=1e-3)`` when None."""
    from fastnn.optim import Adam, Optimizer

    if optimizer is None:
        return Adam(model.parameters(), lr=1e-3)
    if not isinstance(optimizer, Optimizer):
        raise TypeError("optimizer must be a fastnn.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    return optimizer


def _new_history(loss, validating):
    """fit's history with every per-epoch key it will fill, all empty."""
    keys = ["epoch", "train_loss", "penalty", "lr", "step_loss"]
    if loss in _WITH_ACCURACY:
        keys.append("train_accuracy")
    if validating:
        keys += ["val_loss", "val_accuracy"] if loss in _WITH_ACCURACY else ["val_loss"]
    return {key: [] for key in keys}


def _run_epochs(model, run_epoch, n_batches, epochs, n, shuffle, rng, optimizer, loss,
                validation, callbacks, history):
    """The epoch loop: train, record, validate, then the callbacks (any true return stops).

    ``epochs``: the range of 1-based epoch numbers to train.
    """
    model.train()
    started = []
    step = (epochs.start - 1) * n_batches
    try:
        for cb in callbacks:
            cb.on_train_begin(model, history)
            started.append(cb)
        for epoch in epochs:
            order = rng.permutation(n) if shuffle else None
            total_loss, total_penalty, correct, step = run_epoch(order, epoch, step, history)
            history["epoch"].append(epoch)
            history["train_loss"].append(total_loss / n)
            history["penalty"].append(total_penalty / n_batches)
            history["lr"].append(float(optimizer.lr))
            if loss in _WITH_ACCURACY:
                history["train_accuracy"].append(correct / n)
            if validation is not None:
                _validate(model, *validation, loss, history)
            # every callback sees the epoch, also after one asked to stop
            stops = [cb.on_epoch_end(model, history) for cb in callbacks]
            if any(stops):
                break
    finally:
        for cb in started:      # those whose on_train_begin ran (one may have refused)
            cb.on_train_end(model, history)


ENGINES = ("auto", "compiled", "layers")


def _choose_engine(engine, model, optimizer, loss, X, batches, l2, l1, max_norm):
    """(plan, None) for the compiled engine, or (None, why the layer path runs)."""
    from fastnn.engine import NotCompilable, Plan

    if engine == "layers":
        return None, "engine='layers' was asked for"
    try:
        return Plan(model, optimizer, loss, X.shape[1], batches, l2, l1, max_norm), None
    except NotCompilable as exc:
        if engine == "compiled":
            raise ValueError(f"engine='compiled' cannot train this model: {exc}") from None
        return None, str(exc)


def _validate(model, X_val, y_val, loss, history):
    scores = _evaluate(model, X_val, y_val, loss, _EVAL_BATCH)
    history["val_loss"].append(scores["loss"])
    if loss in _WITH_ACCURACY:
        history["val_accuracy"].append(scores["accuracy"])


def _compiled_epoch(plan, boundaries, X, y, schedule, optimizer, sample_weight, batches, order,
                    epoch, step, history):
    """One epoch in one compiled call; returns what :func:`_layers_epoch` returns.

    The schedule is evaluated in Python for the epoch's steps first (so a
    bad value stops the epoch before its first step, where the layer path
    would stop at that step).  With ``boundaries`` (callbacks or validation
    run between epochs) the plan loads the model's values before the epoch
    and stores its own after it; a diverging epoch is stored in any case.
    """
    k = len(batches)
    if schedule is not None:
        lrs = np.array([real_scalar(schedule(step + i), "schedule(step)", low=0.0)
                        for i in range(k)])
    else:
        lrs = np.full(k, float(optimizer.lr))
    order = np.arange(X.shape[0]) if order is None else order
    if boundaries:
        plan.load()
    done = plan.epoch(X, y, order, lrs, plan.draw_seeds(k), sample_weight)
    if boundaries or done < k:
        plan.store()
    history["step_loss"].extend(plan.step_loss[:done].tolist())
    if schedule is not None:
        optimizer.lr = float(lrs[min(done, k - 1)])
    if done < k:
        raise DivergenceError(epoch, done + 1, k, step + done, float(plan.step_loss[done]),
                              history)
    total_loss = total_penalty = 0.0
    for (start, stop), value, penalty in zip(batches, plan.step_loss.tolist(),
                                             plan.step_penalty.tolist()):
        total_loss += value * (stop - start)
        total_penalty += penalty
    return total_loss, total_penalty, int(plan.step_correct.sum()), step + k


def check_sample_weight(sample_weight, n):
    """None, or the weights as a float64 (n,) array of finite values >= 0."""
    if sample_weight is None:
        return None
    if on_device(sample_weight):
        raise TypeError("sample_weight is a GPU array; pass host (numpy) weights")
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64).reshape(-1) if w.ndim <= 1 else w
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {np.shape(sample_weight)}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(f"sample_weight must be finite and >= 0; sample_weight[{bad[0]}] = "
                         f"{w[bad[0]]}")
    return w


def _weighted_loss(loss, out, yb, wb):
    """(sum_i w_i l_i / sum_i w_i, its gradient): l_i is sample i's loss (mean over outputs)."""
    rows, grad = LOSS_WITH_GRAD_NONE[loss](out, yb)   # per-sample values, gradient of their sum
    total = float(wb.sum())
    per_output = 1 if loss in CLASSIFICATION else out.shape[1]
    c = wb / (total * per_output) if total > 0 else np.zeros_like(wb)
    rows = _host(rows).reshape(out.shape[0], -1).sum(axis=1)
    value = float(np.dot(c, rows)) if total > 0 else 0.0
    return value, grad * c.astype(grad.dtype).reshape(-1, 1)


def _keeping_grads(params, run_epoch, *args):
    """``run_epoch(*args)``, then each gradient written into the array ``.grad`` held before.

    A step's backward makes new gradient arrays; writing the last ones into
    those held at the epoch's start keeps ``Parameter.grad`` the same object
    wherever Python code can look (as the compiled engine does).
    """
    held = [p.grad for p in params]
    try:
        return run_epoch(*args)
    finally:
        for p, h in zip(params, held):
            g = p.grad
            if (h is None or g is None or h is g or tuple(h.shape) != tuple(g.shape)
                    or h.dtype != g.dtype or on_device(h) != on_device(g)):
                continue
            if isinstance(h, np.ndarray):
                if not h.flags.writeable:
                    continue
                h[...] = g
            else:
                _assign(h, g)
            p.grad = h


def _layers_epoch(model, X, y, loss, optimizer, schedule, l2, l1, max_norm, sample_weight,
                  batches, order, epoch, step, history):
    """One epoch, layer by layer (the reference path).

    Returns (sum of batch loss x batch size, sum of penalties, correct
    training predictions, the global step after the epoch).
    """
    device = model.device
    decayed = [p for p in model.parameters() if p.decay]
    buffers = [b for _, b in model.named_buffers()]
    total_loss = total_penalty = 0.0
    correct = 0
    for b, (start, stop) in enumerate(batches, 1):
        idx = slice(start, stop) if order is None else order[start:stop]
        xb, yb = X[idx], y[idx]
        if schedule is not None:
            optimizer.lr = real_scalar(schedule(step), "schedule(step)", low=0.0)
        # The forward updates batch-norm running statistics in place; a
        # diverging batch must not leave NaN in them for eval mode.
        saved = [_copy(buf) for buf in buffers]
        out = model.forward(_move(xb, device))
        if sample_weight is None:
            value, dout = LOSS_WITH_GRAD[loss](out, _move(yb, device))
        else:
            value, dout = _weighted_loss(loss, out, _move(yb, device), sample_weight[idx])
        value = float(value)
        if not math.isfinite(value):
            for buf, old in zip(buffers, saved):
                _assign(buf, old)
            raise DivergenceError(epoch, b, len(batches), step, value, history)
        model.zero_grad()
        model.backward(dout)
        penalty = _add_penalties(decayed, l2, l1)
        optimizer.step()
        if max_norm is not None:
            for p in decayed:
                if p.data.ndim == 2:
                    F.max_norm_(p.data, max_norm)
        history["step_loss"].append(value)
        total_loss += value * (stop - start)
        total_penalty += penalty
        if loss in _WITH_ACCURACY:
            correct += _count_correct(loss, _host(out), yb)
        step += 1
    return total_loss, total_penalty, correct, step


def _count_correct(loss, out, y):
    """Correct predictions among the rows of the host outputs ``out``.

    Class indices: the argmax (first maximum) is the label.  For
    "binary_cross_entropy", a row counts when every label is right, logit > 0
    predicting 1 and a target > 0.5 meaning 1 (scikit-learn's subset
    accuracy, its 0.5 threshold on the probabilities).
    """
    if loss == _BCE:
        return int(np.count_nonzero(np.all((out > 0) == (y > 0.5), axis=1)))
    return int(np.count_nonzero(out.argmax(axis=1) == y))


def _add_penalties(decayed, l2, l1):
    """Add the L2 and L1 penalty gradients to the decayed parameters; returns the penalty."""
    penalty = 0.0
    for p in decayed:
        for lam, pen in ((l2, F.l2_penalty), (l1, F.l1_penalty)):
            if lam:
                pv, pg = pen(p.data, lam)
                penalty += float(pv)
                p.accumulate(pg)
    return penalty


#: fit_many arguments that may differ between the models (a list: one value per model).
PER_MODEL = ("schedule", "rng", "l2", "l1", "max_norm")


def _per_model(kwargs, k):
    """[kwargs of model i]: a list or tuple under a PER_MODEL key is split over the k models."""
    out = [dict(kwargs) for _ in range(k)]
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)) and key in PER_MODEL:
            if len(value) != k:
                raise ValueError(f"{key} has {len(value)} values for {k} models")
            for i in range(k):
                out[i][key] = value[i]
        elif isinstance(value, (list, tuple)) and key != "validation":
            raise TypeError(f"{key} cannot differ between models (per-model lists are "
                            f"accepted for {', '.join(PER_MODEL)})")
    return out


def fit_many(models, X, y, optimizers=None, n_jobs=None, return_exceptions=False, **kwargs):
    """Train independent models on the same data at once; each as :func:`fit` would.

    The models train in ``n_jobs`` threads: the compiled engine releases
    the GIL for a whole epoch, so K small models spread over the cores.
    Models the engine cannot compile (``engine.why_not``) train afterwards,
    one by one, on the layer path.

    Parameters
    ----------
    models : sequence of fastnn.nn.Module
        Distinct models (their own initializations, dropout rates, ...).
    X, y : array_like
        Shared training data (see :func:`fit`).
    optimizers : sequence of fastnn.optim.Optimizer, optional
        One per model (learning rate, momentum, weight decay); default
        ``Adam(model.parameters(), lr=1e-3)`` for each.
    n_jobs : int >= 1, optional
        Threads; default ``numba.get_num_threads()`` (the cores numba uses).
    return_exceptions : bool
        Put the exception a model's fit raised (a :class:`DivergenceError`,
        say) in its place in the result instead of raising it.
    **kwargs
        Any other argument of :func:`fit` (``engine`` and ``progress``
        excepted).  ``schedule``, ``rng``, ``l2``, ``l1`` and ``max_norm``
        may be lists with one value per model.

    Returns
    -------
    list of dict (or exceptions, with ``return_exceptions``)
        The history of each model, as :func:`fit` returns it.  Each equals
        what ``fit(models[i], X, y, optimizer=optimizers[i], **kwargs_i)``
        returns, and leaves the model and optimizer in the same state.

    Raises
    ------
    ValueError, TypeError
        Mismatched list lengths, a per-model list under another argument,
        and whatever :func:`fit` raises for one of the models (the first
        such error, after every model has finished or failed).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn, optim, train
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((64, 4)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> models = [nn.Sequential(nn.Linear(4, 8, rng=s), nn.ReLU(), nn.Linear(8, 2, rng=s))
    ...           for s in range(3)]
    >>> opts = [optim.SGD(m.parameters(), lr=lr) for m, lr in zip(models, (0.01, 0.1, 1.0))]
    >>> hists = train.fit_many(models, X, y, opts, epochs=2, rng=[0, 1, 2], l2=[0.0, 1e-3, 0.0])
    >>> [h["engine"] for h in hists]
    ['compiled', 'compiled', 'compiled']
    """
    from concurrent.futures import ThreadPoolExecutor

    from numba import get_num_threads

    from fastnn.engine import one_blas_thread, why_not
    from fastnn.optim import Adam

    models = list(models)
    for key in ("engine", "progress"):
        if key in kwargs:
            raise TypeError(f"fit_many does not take {key!r}")
    if optimizers is None:
        optimizers = [Adam(m.parameters(), lr=1e-3) for m in models]
    optimizers = list(optimizers)
    if len(optimizers) != len(models):
        raise ValueError(f"got {len(optimizers)} optimizers for {len(models)} models")
    n_jobs = get_num_threads() if n_jobs is None else integer(n_jobs, "n_jobs", low=1)
    jobs = [dict(kw, optimizer=opt) for kw, opt in zip(_per_model(kwargs, len(models)),
                                                      optimizers)]
    compiled = [i for i, (m, o) in enumerate(zip(models, optimizers)) if why_not(m, o) is None]
    results = [None] * len(models)

    def one(i):
        try:
            results[i] = fit(models[i], X, y, progress=False, **jobs[i])
        except Exception as exc:
            results[i] = exc

    # One BLAS thread for the whole pool: the limit is process-wide, so a
    # model finishing must not hand the BLAS its thread team back while the
    # others still run.
    if compiled:      # (without the engine's extra, nothing is compiled: no BLAS to limit)
        with one_blas_thread(), ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(one, compiled))
    for i in range(len(models)):
        if i not in compiled:
            one(i)
    for r in results:
        if isinstance(r, Exception) and not return_exceptions:
            raise r
    return results


_EVAL_BATCH = 4096  # the default batch_size of predict / evaluate (and fit's validation)


def _eval_forward(model, X, batch_size):
    """Forward in eval mode, in chunks, on validated non-empty host X; host outputs.

    Through ``model.infer``: the model's mode and state are never touched, so
    predictions may run in threads beside each other and beside training.  A
    GPU model gets each chunk copied to the device and its outputs copied back.
    """
    device = model.device
    # each chunk's outputs come back at once: device memory stays one chunk
    chunks = [_host(model.infer(_move(X[i:i + batch_size], device)))
              for i in range(0, X.shape[0], batch_size)]
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _evaluate(model, X, y, loss, batch_size):
    """:func:`evaluate` on arrays already validated by as_inputs / as_targets (X non-empty)."""
    out = _eval_forward(model, X, batch_size)
    result = {"loss": float(_LOSS_VALUE[loss](out, y))}
    if loss in _WITH_ACCURACY:
        result["accuracy"] = _count_correct(loss, out, y) / out.shape[0]
    return result


def predict(model, X, batch_size=_EVAL_BATCH):
    """The model's raw outputs (scores / regression values) in eval mode.

    Class labels are ``predict(model, X).argmax(axis=1)``.  The model is not
    modified, not even its train/eval mode (see ``Module.infer``), so
    concurrent predictions are safe.

    Parameters
    ----------
    model : fastnn.nn.Module
    X : array_like, shape (N, in_features)
        Converted to the model's dtype.
    batch_size : int >= 1
        Rows per forward pass (bounds memory).

    Returns
    -------
    ndarray, shape (N, out_features)
        A host array, also for a model on the GPU (each batch is copied to
        the device and its outputs back).
    """
    X = as_inputs(model, X)
    batch_size = integer(batch_size, "batch_size", low=1)
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    return _eval_forward(model, X, batch_size)


def predict_proba(model, X, batch_size=_EVAL_BATCH, loss="cross_entropy"):
    """Probabilities from the model's outputs, shape (N, out_features).

    ``softmax(predict(model, X))`` (rows sum to 1) for a model trained with
    a softmax loss; with ``loss="binary_cross_entropy"`` the sigmoid of each
    output (one independent probability per label).
    """
    loss = check_choice(loss, "loss", _WITH_ACCURACY)
    out = predict(model, X, batch_size=batch_size)
    if loss == _BCE:
        return Sigmoid().infer(out)     # the layers' sigmoid: exp(-|x|), accurate in the tails
    return F.softmax(out, axis=1)


def evaluate(model, X, y, loss="cross_entropy", batch_size=_EVAL_BATCH):
    """Loss (and accuracy for classification) of the model in eval mode.

    Returns
    -------
    dict
        {"loss": mean loss over all samples, "accuracy": fraction correct
        (classification losses only; for "binary_cross_entropy", the samples
        with every label right, logit > 0 meaning 1)}.
    """
    loss = check_choice(loss, "loss", LOSSES)
    X = as_inputs(model, X)
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    y = as_targets(model, X, y, loss)
    batch_size = integer(batch_size, "batch_size", low=1)
    return _evaluate(model, X, y, loss, batch_size)
