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

``as_inputs`` and ``as_targets`` are internals shared with
:mod:`fastnn.diagnostics` (not part of ``__all__``).
"""
import contextlib
import functools
import inspect
import itertools
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
from fastnn._cpu.losses import argmax_correct, subset_correct, weighted_mean_
from fastnn._loss_table import LOSS_TABLE
from fastnn._validation import as_rng, check_choice, class_labels, integer, real_scalar
from fastnn.callbacks import ProgressBar, as_callbacks, is_callback
from fastnn.nn import Dropout, Sigmoid

__all__ = ["fit", "fit_many", "predict", "predict_proba", "evaluate", "steps_per_epoch",
           "batch_bounds", "DivergenceError", "LOSSES"]

#: The names of fit's losses (their records: :data:`fastnn._loss_table.LOSS_TABLE`).
LOSSES = tuple(LOSS_TABLE)
_BCE = "binary_cross_entropy"


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
    layers (activations, Dropout), to the first Linear (``in_features``),
    BatchNorm1d (``num_features``) or one-dimensional LayerNorm; any other
    module (a custom one) ends the walk with None, and the forward pass
    itself then judges X.
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
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
            return module.normalized_shape[0]
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
    if not LOSS_TABLE[loss].per_output:
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
        Over the model's parameters, or some of them (the others stay
        frozen); one holding a parameter that is not the model's is refused.
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
        a CPU ``nn.Sequential`` of Linear, activation, BatchNorm1d, LayerNorm
        and Dropout layers with SGD, Adam or AdamW; ValueError naming the
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
        run.  Only their ratios matter: fit scales them by the power of two
        that brings the largest into [0.5, 1) (exact), so weights of 1e-320
        or 1e308 train as unit weights do.  CPU models only; both engines.
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
        engine each time.  One Callback object may appear once.
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
        Bad arguments, mismatched shapes, labels out of range, an optimizer
        holding a parameter that is not the model's; a ``sample_weight``
        whose positive weights span more than float64's range (one below
        2**-1074 times the largest); all before training.

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
                layer.draw_seed()


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
    sample_weight = _scaled_weights(check_sample_weight(sample_weight, X.shape[0]))
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
    """The optimizer fit uses: ``optimizer``, or a fresh ``Adam(lr=1e-3)`` when None.

    An optimizer over some of the model's parameters (frozen layers) is
    fine; one holding a parameter that is not the model's (built for
    another model, or before ``copy.deepcopy(model)``) is refused: the fit
    would update that other model, or nothing, and say nothing.
    """
    from fastnn.optim import Adam, Optimizer

    if optimizer is None:
        return Adam(model.parameters(), lr=1e-3)
    if not isinstance(optimizer, Optimizer):
        raise TypeError("optimizer must be a fastnn.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    own = {id(p) for p in model.parameters()}
    for i, p in enumerate(optimizer.params):
        if id(p) not in own:
            raise ValueError(
                f"optimizer.params[{i}] (shape {tuple(p.data.shape)}) is not a parameter of "
                "the model: the optimizer was built for another model (a copy.deepcopy of a "
                "model has new parameters); build it over model.parameters()")
    return optimizer


def _new_history(loss, validating):
    """fit's history with every per-epoch key it will fill, all empty."""
    keys = ["epoch", "train_loss", "penalty", "lr", "step_loss"]
    accuracy = LOSS_TABLE[loss].accuracy is not None
    if accuracy:
        keys.append("train_accuracy")
    if validating:
        keys += ["val_loss", "val_accuracy"] if accuracy else ["val_loss"]
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
            if "train_accuracy" in history:
                history["train_accuracy"].append(correct / n)
            if validation is not None:
                _validate(model, *validation, loss, history)
            # every callback sees the epoch, also after one asked to stop
            stops = [cb.on_epoch_end(model, history) for cb in callbacks]
            if any(stops):
                break
    except BaseException as exc:
        _end_callbacks(started, model, history, pending=exc)
        raise
    _end_callbacks(started, model, history)


def _end_callbacks(callbacks, model, history, pending=None):
    """Every callback's ``on_train_end``, also after one raised; then the first error.

    ``callbacks``: those whose ``on_train_begin`` ran (one may have refused).
    ``pending``: the exception training stopped with; it stays the one the
    caller raises, and the callbacks' errors are noted on it (Python 3.11+).
    Without one, the first callback error is raised once all have run (an
    ``EarlyStopping`` after a failing callback still restores its epoch).
    """
    first = pending
    for cb in callbacks:
        try:
            cb.on_train_end(model, history)
        except Exception as exc:
            if first is None:
                first = exc
            elif hasattr(first, "add_note"):
                first.add_note(f"{type(cb).__name__}.on_train_end also raised {exc!r}")
    if first is not None and first is not pending:
        raise first


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
    if "accuracy" in scores:
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


def _scaled_weights(w):
    """``w`` (checked float64 weights, or None) scaled so that its largest weight is in [0.5, 1).

    A batch's weighted mean loss does not depend on the scale of the
    weights, so fit trains on these on both engines: scaled by a power of
    two, which is exact, ordinary weights give bit for bit the same run,
    while weights whose batch sum overflows (1e308) or is subnormal (1e-320)
    become ordinary numbers.

    Raises
    ------
    ValueError
        A positive weight below 2**-1074 times the largest one (it would
        become 0): the range of the weights exceeds float64's.
    """
    if w is None:
        return None
    top = w.max()
    if top == 0.0:
        return w            # all zero: zero-gradient steps, as documented in fit
    scaled = np.ldexp(w, -np.frexp(top)[1])
    lost = np.flatnonzero((scaled == 0.0) & (w > 0.0))
    if lost.size:
        raise ValueError(f"sample_weight spans more than float64's range: sample_weight"
                         f"[{lost[0]}] = {w[lost[0]]} is below 2**-1074 times the largest "
                         f"weight, {top}")
    return scaled


def _weighted_loss(loss, out, yb, wb):
    """(sum_i w_i l_i / sum_i w_i, its gradient): l_i is sample i's loss (mean over outputs).

    The per-sample losses and the gradient of their sum come from the loss's
    reduction "none"; :func:`fastnn._cpu.losses.weighted_mean_`, which the
    compiled engine calls too, weighs them (host arrays: sample weights are
    CPU-only).
    """
    rows, grad = LOSS_TABLE[loss].per_sample(out, yb)   # per-sample values, gradient of their sum
    value = weighted_mean_(rows.reshape(out.shape[0], -1), wb, grad)
    return float(value), grad


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
    spec = LOSS_TABLE[loss]
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
            value, dout = spec.with_grad(out, _move(yb, device))
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
        if spec.accuracy is not None:
            correct += _count_correct(loss, _host(out), yb)
        step += 1
    return total_loss, total_penalty, correct, step


def _count_correct(loss, out, y):
    """Correct predictions among the rows of the host outputs ``out``.

    Class indices: the argmax (first maximum) is the label.  For
    "binary_cross_entropy", a row counts when every label is right, logit > 0
    predicting 1 and a target > 0.5 meaning 1 (scikit-learn's subset
    accuracy, its 0.5 threshold on the probabilities).  The kernels are the
    compiled engine's.
    """
    out = np.ascontiguousarray(out)
    if LOSS_TABLE[loss].accuracy == "subset":
        return int(subset_correct(out, np.ascontiguousarray(y)))
    return int(argmax_correct(out, y))


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


#: fit_many arguments whose list or tuple is one value per model (``per_model`` shorthand).
PER_MODEL = ("schedule", "rng", "l2", "l1", "max_norm")
#: fit arguments of which a list or tuple is ONE value: shared by every model in fit_many.
_LIST_VALUED = ("validation", "sample_weight", "callbacks")
#: fit arguments fit_many does not pass on (its own, or ``optimizers``).
_NOT_PASSED = ("model", "X", "y", "optimizer", "engine", "progress")


def _fit_options():
    """{name: default} of the fit arguments fit_many passes on."""
    params = inspect.signature(fit).parameters
    return {k: p.default for k, p in params.items() if k not in _NOT_PASSED}


def _split_kwargs(kwargs, per_model):
    """(shared values, {name: per-model values}) of fit_many's fit arguments, checked by name."""
    known = _fit_options()
    if per_model is None:
        per_model = {}
    if not isinstance(per_model, dict):
        raise TypeError("per_model must be a dict {fit argument: [one value per model]}, got "
                        f"{type(per_model).__name__}")
    for key in list(kwargs) + list(per_model):
        if key not in known:
            hint = " (pass optimizers=[...])" if key == "optimizer" else ""
            raise TypeError(f"fit_many does not take {key!r}{hint}; it passes on "
                            f"{', '.join(known)}")
    split, shared = dict(per_model), {}
    for key, value in kwargs.items():
        if key in split:
            raise TypeError(f"{key} is given both as a shared value and in per_model")
        if key in PER_MODEL and isinstance(value, (list, tuple)):
            split[key] = value
        elif isinstance(value, (list, tuple)) and key not in _LIST_VALUED:
            raise TypeError(f"{key} is a {type(value).__name__}: give one {key} for every "
                            f"model, or one per model as per_model={{{key!r}: [...]}}")
        else:
            shared[key] = value
    return shared, split


def _per_model(kwargs, per_model, k):
    """[fit kwargs of model i]: the shared values, and the per-model ones split over k models."""
    shared, split = _split_kwargs(kwargs, per_model)
    for key, values in split.items():
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"per_model[{key!r}] must be a list of one value per model, got "
                            f"{type(values).__name__}")
        if len(values) != k:
            raise ValueError(f"{key} has {len(values)} values for {k} models")
    return [dict(shared, **{key: values[i] for key, values in split.items()})
            for i in range(k)]


def _check_distinct(models):
    """Refuse a model given twice, and models sharing a layer, a parameter or memory.

    Their fits would run at once on the same numbers: one model's updates
    lost, a result matching no order of the fits.
    """
    from fastnn.nn import Module, Parameter

    owner = {}
    for i, model in enumerate(models):
        if not isinstance(model, Module):
            raise TypeError(f"models[{i}] is a {type(model).__name__}, not a fastnn.nn.Module")
        for obj in model.modules() + model.parameters():
            j = owner.setdefault(id(obj), i)
            if j == i:
                continue
            if obj is models[j]:
                what = f"models[{j}] and models[{i}] are the same model"
            elif obj is model:
                what = f"models[{i}] is a layer of models[{j}]"
            elif isinstance(obj, Parameter):
                what = (f"models[{j}] and models[{i}] share a parameter (shape "
                        f"{tuple(obj.data.shape)})")
            else:
                what = f"models[{j}] and models[{i}] share a layer (a {type(obj).__name__})"
            raise ValueError(f"{what}: their fits would run at once and lose each other's "
                             "updates; give each its own (copy.deepcopy), or fit them one "
                             "after another")
    arrays = [[a for a in [p.data for p in m.parameters()] + [b for _, b in m.named_buffers()]
               if isinstance(a, np.ndarray)] for m in models]
    for i, j in itertools.combinations(range(len(models)), 2):
        if any(np.may_share_memory(a, b) for a in arrays[i] for b in arrays[j]):
            raise ValueError(f"models[{i}] and models[{j}] hold parameters or buffers in the "
                             "same memory: their fits would run at once and lose each other's "
                             "updates; give each its own arrays")


def _check_jobs(models, jobs, n):
    """fit's cheap argument checks for every model, before any trains; ``n``: rows of X or None."""
    defaults, owner = _fit_options(), {}
    for i, (model, job) in enumerate(zip(models, jobs)):
        a = dict(defaults, **job)
        try:
            _check_options(a["loss"], "auto", a["epochs"], a["batch_size"], a["l2"], a["l1"],
                           a["max_norm"], a["schedule"])
            as_callbacks(a["callbacks"])
            if n is not None:
                check_sample_weight(a["sample_weight"], n)
            _check_optimizer(model, a["optimizer"])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"models[{i}]: {exc}") from None
        for key, obj in _stateful(a):
            j = owner.setdefault(id(obj), i)
            if j != i:
                raise ValueError(
                    f"one {type(obj).__name__} object is in the {key} of models[{j}] and "
                    f"models[{i}]: their fits run at once and would share its state; give "
                    f"each model its own, as per_model={{{key!r}: [...]}}")


def _stateful(args):
    """(argument, object) for each object with state in one fit's arguments.

    A Callback object (an EarlyStopping, a ProgressBar) keeps one fit's
    epochs; a Generator ``rng`` is drawn from by the fit.  Concurrent fits
    must not share one.  (Plain callables and int seeds may be shared.)
    """
    out = [("callbacks", cb) for cb in args["callbacks"] or () if is_callback(cb)]
    if isinstance(args["rng"], np.random.Generator):
        out.append(("rng", args["rng"]))
    return out


def _n_rows(X):
    try:
        return len(X)
    except TypeError:
        return None


def fit_many(models, X, y, optimizers=None, n_jobs=None, return_exceptions=False,
             per_model=None, **kwargs):
    """Train independent models on the same data at once; each as :func:`fit` would.

    The models train in ``n_jobs`` threads: the compiled engine releases
    the GIL for a whole epoch, so K small models spread over the cores.
    Models the engine cannot compile (``engine.why_not``) train afterwards,
    one by one, on the layer path.

    Parameters
    ----------
    models : sequence of fastnn.nn.Module
        Distinct models (their own initializations, dropout rates, ...):
        a model given twice, or models sharing a layer, a parameter or the
        memory of one, are refused (their fits would race).
    X, y : array_like
        Shared training data (see :func:`fit`).
    optimizers : sequence of fastnn.optim.Optimizer, optional
        One per model, over that model's parameters (learning rate,
        momentum, weight decay); default ``Adam(model.parameters(),
        lr=1e-3)`` for each.
    n_jobs : int >= 1, optional
        Threads; default ``numba.get_num_threads()`` (the cores numba uses).
    return_exceptions : bool
        Put the exception a model's fit raised (a :class:`DivergenceError`,
        say) in its place in the result instead of raising it.
    per_model : dict, optional
        ``{name: [value of model 0, value of model 1, ...]}`` for any
        argument of :func:`fit` passed on (below): one value per model.
        Bagging is ``per_model={"sample_weight": [w0, w1, ...]}``; each
        model's own callbacks are ``per_model={"callbacks": [[...], [...]]}``.
    **kwargs
        Any other argument of :func:`fit` (``engine``, ``progress`` and
        ``optimizer`` excepted), one value shared by every model, as
        :func:`fit` takes it: ``sample_weight`` one array for all,
        ``callbacks`` one list run by every fit (plain callables may be
        shared; a :class:`~fastnn.callbacks.Callback` object, which holds
        one fit's state, may not: give each model its own in
        ``per_model``), ``validation`` one pair, ``rng`` one int seed (a
        Generator object, which a fit draws from, may not be shared
        either).  Shorthand: ``schedule``,
        ``rng``, ``l2``, ``l1`` and ``max_norm`` given as a list or tuple
        are per-model values.

    Returns
    -------
    list of dict (or exceptions, with ``return_exceptions``)
        The history of each model, as :func:`fit` returns it.  Each equals
        what ``fit(models[i], X, y, optimizer=optimizers[i], **kwargs_i)``
        returns, and leaves the model and optimizer in the same state.

    Raises
    ------
    ValueError, TypeError
        Before any model trains: shared models, layers, parameters,
        callback objects or Generators, an optimizer holding another model's parameter,
        mismatched list lengths, an unknown argument or a list where one
        value is expected, a bad option or sample_weight of one model
        (the message names it: ``models[i]: ...``).  Then whatever
        :func:`fit` raises for one of the models (the first such error,
        after every model has finished or failed).

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

    Bagging: each model on its own bootstrap sample, as sample weights.

    >>> boot = [np.bincount(rng.integers(0, 64, 64), minlength=64) for _ in models]
    >>> hists = train.fit_many(models, X, y, opts, epochs=2, per_model={"sample_weight": boot})
    """
    from concurrent.futures import ThreadPoolExecutor

    from numba import get_num_threads

    from fastnn.engine import one_blas_thread, why_not
    from fastnn.optim import Adam

    models = list(models)
    _check_distinct(models)
    if optimizers is None:
        optimizers = [Adam(m.parameters(), lr=1e-3) for m in models]
    optimizers = list(optimizers)
    if len(optimizers) != len(models):
        raise ValueError(f"got {len(optimizers)} optimizers for {len(models)} models")
    jobs = [dict(kw, optimizer=opt) for kw, opt in zip(_per_model(kwargs, per_model, len(models)),
                                                      optimizers)]
    _check_jobs(models, jobs, _n_rows(X))
    n_jobs = get_num_threads() if n_jobs is None else integer(n_jobs, "n_jobs", low=1)
    compiled = [i for i, (m, o) in enumerate(zip(models, optimizers)) if why_not(m, o) is None]
    results = [None] * len(models)

    def one(i):
        try:
            results[i] = fit(models[i], X, y, progress=False, **jobs[i])
        except Exception as exc:
            results[i] = exc

    # One BLAS thread for the whole pool (one_blas_thread is a count: each
    # fit inside enters it too, and only the last to leave restores the BLAS).
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
    result = {"loss": float(LOSS_TABLE[loss].value(out, y))}
    if LOSS_TABLE[loss].accuracy is not None:
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
    loss = check_choice(loss, "loss", tuple(k for k, v in LOSS_TABLE.items() if v.accuracy))
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
