"""Per-epoch callbacks of :func:`fastnn.train.fit`: the protocol, a progress bar, early stopping.

:func:`~fastnn.train.fit` takes ``callbacks=[...]``.  Each entry is either a
:class:`Callback` (any object with its three methods) or a plain callable
``f(history) -> bool`` called at every epoch end.  Events, in order:

* ``on_train_begin(model, history)`` once, before the first epoch, with the
  (empty) history whose keys the run will fill: a callback can refuse a
  key it needs here, before anything trains;
* ``on_epoch_end(model, history)`` after each epoch (and its validation),
  with the history so far; a true return ends training after that epoch.
  It may change ``optimizer.lr`` for the next epoch (when ``fit`` has no
  ``schedule``) and read or copy the model (not train it);
* ``on_train_end(model, history)`` once, also when training stopped early or
  raised (a :class:`~fastnn.train.DivergenceError`, or a later callback's
  ``on_train_begin`` refusing), for every callback whose ``on_train_begin``
  ran, also after an earlier callback's ``on_train_end`` raised: once all
  have run, ``fit`` raises the error training stopped with, else the first
  one an ``on_train_end`` raised.

Every callback sees every epoch: one that asks to stop does not keep the
later ones in the list from being called for that epoch.

Examples
--------
>>> import numpy as np
>>> from fastnn import nn, optim, train
>>> from fastnn.callbacks import EarlyStopping
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((200, 4)).astype(np.float32)
>>> y = (X[:, 0] + rng.standard_normal(200) > 0).astype(np.int64)   # noisy labels
>>> model = nn.Sequential(nn.Linear(4, 64, rng=0), nn.ReLU(), nn.Linear(64, 2, rng=1))
>>> stop = EarlyStopping(monitor="val_loss", patience=3)
>>> hist = train.fit(model, X[:150], y[:150], validation=(X[150:], y[150:]), epochs=100,
...                  optimizer=optim.Adam(model.parameters(), lr=0.01), rng=0,
...                  progress=False, callbacks=[stop])
>>> stop.best_epoch, stop.stopped_epoch, len(hist["epoch"])   # the model holds epoch 1's weights
(1, 4, 4)
"""
import math

from fastnn._validation import boolean, integer, real_scalar

__all__ = ["Callback", "ProgressBar", "EarlyStopping"]


class Callback:
    """Base class of the callback protocol: every event does nothing.

    Subclass it and override the events you need (see the module docstring).
    """

    def on_train_begin(self, model, history):
        """Before the first epoch; ``history`` has its keys and empty lists."""

    def on_epoch_end(self, model, history):
        """After each epoch; return True to stop training."""
        return False

    def on_train_end(self, model, history):
        """After the last epoch, also after an early stop or an exception."""


class _Function(Callback):
    """A plain callable ``f(history) -> bool`` as an epoch-end callback."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, model, history):
        return self.function(history)


def is_callback(obj):
    """Whether ``obj`` has the three events of :class:`Callback` (an object with state)."""
    return all(callable(getattr(obj, event, None))
               for event in ("on_train_begin", "on_epoch_end", "on_train_end"))


def as_callbacks(callbacks):
    """``callbacks`` (None or a list or tuple) as a list of :class:`Callback`.

    Raises
    ------
    TypeError
        ``callbacks`` is not a list or tuple, or an entry is neither a
        Callback-like object nor a callable (the message names its index).
    ValueError
        One Callback object twice in the list (its events would run twice
        per event, on one state).
    """
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}")
    out = []
    for i, cb in enumerate(callbacks):
        if is_callback(cb):
            if any(cb is other for other in out):
                first = next(j for j, other in enumerate(callbacks) if other is cb)
                raise ValueError(f"callbacks[{i}] is callbacks[{first}] again (one "
                                 f"{type(cb).__name__} object); give each entry its own")
            out.append(cb)
        elif callable(cb):
            out.append(_Function(cb))
        else:
            raise TypeError(f"callbacks[{i}] must be a fastnn.callbacks.Callback or a callable "
                            f"history -> bool, got {type(cb).__name__}")
    return out


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the last training loss (and validation accuracy).

    ``fit(progress=True)`` adds one.  Silent when tqdm is not installed or
    stderr is not a terminal.

    Parameters
    ----------
    total : int, optional
        Epochs the bar counts to (``fit`` passes its ``epochs``).
    desc : str
        The bar's label.
    """

    def __init__(self, total=None, desc="fit"):
        self.total, self.desc = total, desc
        self._bar = None

    def on_train_begin(self, model, history):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        # disable=None: tqdm stays silent when stderr is not a terminal.
        self._bar = tqdm(total=self.total, desc=self.desc, unit="epoch", disable=None,
                         leave=False)

    def on_epoch_end(self, model, history):
        if self._bar is not None:
            post = {"loss": f"{history['train_loss'][-1]:.4g}"}
            if history.get("val_accuracy"):
                post["val_acc"] = f"{history['val_accuracy'][-1]:.3f}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
        return False

    def on_train_end(self, model, history):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EarlyStopping(Callback):
    """Stop when a monitored history entry has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A per-epoch key of fit's history: "val_loss" (default; needs
        ``validation=``), "val_accuracy", "train_loss", "train_accuracy".
    patience : int >= 1
        Epochs without an improvement before stopping.
    min_delta : float >= 0
        An improvement must beat the best value by more than this.
    mode : {"auto", "min", "max"}
        "auto": "max" for accuracies, "min" otherwise.
    restore_best : bool
        At the end of training, load the parameters and buffers of the best
        epoch back into the model (a host copy of them is kept at each
        improvement).

    Attributes
    ----------
    best : float
        The best monitored value seen (inf or -inf before the first epoch).
    best_epoch : int
        Its 1-based epoch (0 before the first epoch).
    stopped_epoch : int
        The epoch training stopped at, 0 when it ran to the end.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best=True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a history key (str), got {type(monitor).__name__}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = integer(patience, "patience", low=1)
        self.min_delta = real_scalar(min_delta, "min_delta", low=0.0, high=math.inf,
                                     high_open=True)
        self.mode = ("max" if "accuracy" in monitor else "min") if mode == "auto" else mode
        self.restore_best = boolean(restore_best, "restore_best")
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = self.stopped_epoch = 0
        self._best_state = None

    def on_train_begin(self, model, history):
        if not isinstance(history.get(self.monitor), list) or self.monitor in ("epoch", "lr",
                                                                                "step_loss"):
            keys = [k for k, v in history.items()
                    if isinstance(v, list) and k not in ("epoch", "lr", "step_loss")]
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which this fit does not "
                             f"record; it records {keys} (val_* need validation=)")
        self._reset()

    def on_epoch_end(self, model, history):
        value = history[self.monitor][-1]
        gain = (self.best - value) if self.mode == "min" else (value - self.best)
        if gain > self.min_delta or (math.isinf(self.best) and math.isfinite(value)):
            self.best, self.best_epoch = value, history["epoch"][-1]
            if self.restore_best:
                self._best_state = model.state_dict()
            return False
        if history["epoch"][-1] - self.best_epoch >= self.patience:
            self.stopped_epoch = history["epoch"][-1]
            return True
        return False

    def on_train_end(self, model, history):
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
            self._best_state = None
