"""fastnn.callbacks: the per-epoch protocol of train.fit, EarlyStopping, ProgressBar."""
import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.callbacks import Callback, EarlyStopping, ProgressBar
from fastnn.train import DivergenceError, fit

N, D, C = 60, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)


def _model():
    return nn.Sequential(nn.Linear(D, 8, activation="relu", rng=0, dtype=np.float64),
                         nn.Linear(8, C, rng=1, dtype=np.float64))


class Recorder(Callback):
    """Records every event; stops at epoch ``stop_at``."""

    def __init__(self, stop_at=None):
        self.events, self.states, self.stop_at = [], [], stop_at

    def on_train_begin(self, model, history):
        self.events.append(("begin", sorted(k for k, v in history.items() if v == [])))

    def on_epoch_end(self, model, history):
        self.events.append(("epoch", history["epoch"][-1]))
        self.states.append(model.state_dict())
        return history["epoch"][-1] == self.stop_at

    def on_train_end(self, model, history):
        self.events.append(("end", len(history["epoch"])))


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_events_in_order_and_every_callback_sees_the_stopping_epoch(engine):
    X, y = _data()
    first, second = Recorder(stop_at=2), Recorder()
    hist = fit(_model(), X, y, epochs=5, rng=0, progress=False, engine=engine,
               validation=(X[:10], y[:10]), callbacks=[first, second])
    keys = ["epoch", "lr", "penalty", "step_loss", "train_accuracy", "train_loss",
            "val_accuracy", "val_loss"]
    expected = [("begin", keys), ("epoch", 1), ("epoch", 2), ("end", 2)]
    assert first.events == expected and second.events == expected
    assert hist["epoch"] == [1, 2]


def test_train_end_runs_after_divergence():
    X, y = _data()
    X[7, 2] = np.nan
    rec = Recorder()
    with pytest.raises(DivergenceError):
        fit(_model(), X, y, epochs=3, rng=0, progress=False, shuffle=False, callbacks=[rec])
    assert rec.events[0][0] == "begin" and rec.events[-1] == ("end", 0)


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(engine):
    X, y = _data()
    model = _model()
    # A learning rate far too large: the validation loss soon stops improving.
    opt = optim.SGD(model.parameters(), lr=3.0)
    rec = Recorder()
    stop = EarlyStopping(monitor="val_loss", patience=2)
    hist = fit(model, X, y, optimizer=opt, epochs=50, rng=0, progress=False, engine=engine,
               validation=(X, y), callbacks=[rec, stop])
    val = hist["val_loss"]
    best = int(np.argmin(val))
    assert stop.best_epoch == best + 1 and stop.best == val[best]
    assert len(val) == best + 1 + 2 < 50 and stop.stopped_epoch == len(val)
    # every epoch after the best one is no better
    assert all(v >= val[best] for v in val[best:])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, rec.states[best][k], err_msg=k)


def test_early_stopping_min_delta_mode_and_no_restore():
    X, y = _data()
    model = _model()
    rec = Recorder()
    # lr = 0: nothing changes, so nothing improves by more than min_delta after epoch 1
    stop = EarlyStopping(monitor="train_accuracy", patience=3, min_delta=0.01,
                         restore_best=False)
    assert stop.mode == "max"
    hist = fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.0), epochs=20, rng=0,
               progress=False, callbacks=[rec, stop])
    assert hist["epoch"] == [1, 2, 3, 4] and stop.best_epoch == 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, rec.states[-1][k], err_msg=k)


def test_early_stopping_refuses_a_key_the_fit_does_not_record_before_training():
    X, y = _data()
    model = _model()
    before = model.state_dict()
    rec = Recorder()
    with pytest.raises(ValueError, match=r"'val_loss'.*records \['train_loss', 'penalty'"):
        fit(model, X, y, epochs=2, rng=0, progress=False, callbacks=[rec, EarlyStopping()])
    assert [e[0] for e in rec.events] == ["begin", "end"]    # what began is ended
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"patience": 0}, ValueError, "patience"),
    ({"min_delta": -1.0}, ValueError, "min_delta"),
    ({"mode": "up"}, ValueError, "mode"),
    ({"monitor": 3}, TypeError, "monitor"),
    ({"restore_best": "yes"}, TypeError, "restore_best"),
])
def test_early_stopping_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


def test_progress_bar_counts_epochs_and_closes(monkeypatch):
    import tqdm.auto

    bars = []

    class FakeBar:
        def __init__(self, **kwargs):
            self.kwargs, self.updates, self.post, self.closed = kwargs, 0, None, False
            bars.append(self)

        def set_postfix(self, post, refresh):
            self.post = post

        def update(self, n):
            self.updates += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    X, y = _data()
    fit(_model(), X, y, epochs=3, rng=0, validation=(X, y))     # progress=True by default
    (bar,) = bars
    assert bar.kwargs["total"] == 3 and bar.updates == 3 and bar.closed
    assert set(bar.post) == {"loss", "val_acc"}
    fit(_model(), X, y, epochs=3, rng=0, progress=False, callbacks=[ProgressBar(3, "mine")])
    assert len(bars) == 2 and bars[1].kwargs["desc"] == "mine" and bars[1].closed


class FailsAtEnd(Callback):
    def __init__(self, message):
        self.message = message

    def on_train_end(self, model, history):
        raise RuntimeError(self.message)


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_a_failing_train_end_does_not_skip_the_later_ones(engine):
    """EarlyStopping after a failing callback still restores; the first error is raised."""
    X, y = _data()
    model = _model()
    rec, stop = Recorder(), EarlyStopping(monitor="val_loss", patience=2)
    with pytest.raises(RuntimeError, match="first") as info:
        fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=3.0), epochs=50, rng=0,
            progress=False, engine=engine, validation=(X, y),
            callbacks=[FailsAtEnd("first"), rec, FailsAtEnd("second"), stop])
    assert rec.events[-1][0] == "end" and stop.best_epoch < len(rec.states)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, rec.states[stop.best_epoch - 1][k], err_msg=k)
    assert "second" in "".join(getattr(info.value, "__notes__", ["second"]))


def test_a_failing_train_end_after_divergence_leaves_the_divergence_error_raised():
    X, y = _data()
    X[7, 2] = np.nan
    rec = Recorder()
    with pytest.raises(DivergenceError):
        fit(_model(), X, y, epochs=3, rng=0, progress=False, shuffle=False,
            callbacks=[FailsAtEnd("end"), rec])
    assert rec.events[-1] == ("end", 0)


def test_one_callback_object_twice_in_a_fit_is_refused_before_training():
    X, y = _data()
    model = _model()
    stop = EarlyStopping(monitor="train_loss")
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"callbacks\[2\] is callbacks\[0\] again \(one "
                                         "EarlyStopping object\\)"):
        fit(model, X, y, epochs=2, progress=False, callbacks=[stop, lambda h: False, stop])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
