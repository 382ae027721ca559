"""Training never moves the arrays the model and optimizer hold (both engines).

The compiled engine keeps private arenas and writes them back in place
wherever Python code can look (callbacks, validation, the end of the fit,
an error); the layer path updates in place and puts each step's gradients
back into the ``.grad`` arrays held at the epoch's start.  And a fit can
be resumed exactly from saved model and optimizer state.
"""
import pickle

import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.callbacks import Callback
from fastnn.train import DivergenceError, fit

ENGINES = ("compiled", "layers")
N, D, C = 90, 5, 3       # batch 16: 5 batches of 16 and one of 10, 6 steps per epoch


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = (X[:, :C] @ rng.standard_normal(C) > 0).astype(np.int64) + (X[:, 0] > 1)
    return X, y


def _model(seed=0, dropout=0.2):
    return nn.Sequential(nn.Linear(D, 8, rng=seed, dtype=np.float64), nn.Tanh(),
                         nn.BatchNorm1d(8, dtype=np.float64), nn.Dropout(dropout),
                         nn.Linear(8, C, rng=seed + 1, dtype=np.float64))


def _held(model):
    """The arrays the model holds, by name (parameters, gradients, buffers)."""
    out = {name: p.data for name, p in model.named_parameters()}
    out.update((name + ".grad", p.grad) for name, p in model.named_parameters())
    out.update(model.named_buffers())
    return out


def _with_grads(model):
    """Give every parameter a gradient array, as a manual backward would."""
    for p in model.parameters():
        p.grad = np.full_like(p.data, 7.0)
    return model


def _fit(model, engine, opt=None, **kwargs):
    X, y = kwargs.pop("data", None) or _data()
    opt = opt or optim.Adam(model.parameters(), lr=1e-2)
    kwargs.setdefault("epochs", 2)
    hist = fit(model, X, y, optimizer=opt, batch_size=16, rng=0, progress=False, engine=engine,
               **kwargs)
    assert hist["engine"].startswith(engine)
    return hist, opt


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("epochs", [0, 2])
def test_the_held_arrays_stay_the_models_and_receive_the_trained_values(engine, epochs):
    model = _with_grads(_model())
    held = _held(model)
    before = {k: v.copy() for k, v in held.items()}
    _fit(model, engine, epochs=epochs)
    now = _held(model)
    for name, array in held.items():
        assert now[name] is array, name
    # the values are the run's: the other engine, from a fresh copy, agrees
    ref = _with_grads(_model())
    _fit(ref, "layers" if engine == "compiled" else "compiled", epochs=epochs)
    for name, value in _held(ref).items():
        np.testing.assert_allclose(held[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
        if epochs and not name.endswith(".grad"):
            assert not np.array_equal(held[name], before[name]), name
        elif not epochs:
            np.testing.assert_array_equal(held[name], before[name], err_msg=name)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_gradient_before_the_fit_gets_one_of_its_own(engine):
    """A gradient or optimizer state the objects lacked is a new array, sharing no memory."""
    model = _model()
    hist, opt = _fit(model, engine)
    arrays = [p.data for p in model.parameters()] + [p.grad for p in model.parameters()]
    arrays += [a for s in opt.state for a in s.values() if isinstance(a, np.ndarray)]
    for i, a in enumerate(arrays):
        assert type(a) is np.ndarray, i
        assert not any(np.shares_memory(a, b) for b in arrays[i + 1:]), i
        if engine == "compiled":    # (the layer path's come from fastnn.memory's cache)
            assert a.base is None, i
    assert all(s["step"] == len(hist["step_loss"]) for s in opt.state)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_memory_mapped_parameter_stays_mapped_and_receives_the_trained_values(engine,
                                                                                tmp_path):
    model = _model()
    w = model[0].weight
    mm = np.memmap(tmp_path / "w.bin", dtype=np.float64, mode="w+", shape=w.data.shape)
    mm[...] = w.data
    w.data = mm
    ref = _model()
    _fit(model, engine)
    _fit(ref, engine)
    assert model[0].weight.data is mm
    mm.flush()
    on_disk = np.fromfile(tmp_path / "w.bin", dtype=np.float64).reshape(mm.shape)
    np.testing.assert_array_equal(on_disk, ref[0].weight.data)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_attribute_is_added_to_the_model_layers_or_optimizer(engine):
    model = _model()
    model.train()     # the documented mode fit puts the model in (an instance attribute)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    modules = model.modules()
    before = [sorted(vars(m)) for m in modules]
    opt_before = sorted(vars(opt))
    _fit(model, engine, opt=opt)
    assert [sorted(vars(m)) for m in modules] == before
    assert sorted(vars(opt)) == opt_before


class _Replace(Callback):
    """At the end of epoch ``at``, put new arrays (or edit in place) and record what it sees."""

    def __init__(self, at=1, in_place=False):
        self.at, self.in_place, self.seen = at, in_place, []

    def on_epoch_end(self, model, history):
        self.seen.append({k: np.array(v) for k, v in model.state_dict().items()})
        if history["epoch"][-1] != self.at:
            return False
        w, bn = model[0].weight, model[2]
        if self.in_place:
            w.data *= 0.5
            bn.running_var[...] = 2.0
        else:
            self.old = w.data
            w.data = w.data * 0.5
            self.new = w.data
            bn.running_mean = np.zeros_like(bn.running_mean)
        return False


@pytest.mark.parametrize("in_place", [False, True])
def test_changes_made_by_a_callback_are_honoured_by_both_engines(in_place):
    runs = {}
    for engine in ENGINES:
        model = _model()
        cb = _Replace(in_place=in_place)
        _fit(model, engine, epochs=3, callbacks=[cb])
        runs[engine] = (model, cb)
    (got, got_cb), (ref, ref_cb) = runs["compiled"], runs["layers"]
    for seen, want in zip(got_cb.seen, ref_cb.seen):      # what each callback saw
        for k in want:
            np.testing.assert_allclose(seen[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(got.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    if not in_place:
        assert got[0].weight.data is got_cb.new
        # the replaced array keeps the values it had when it was replaced
        np.testing.assert_array_equal(got_cb.old, got_cb.seen[0]["0.weight"])


class _Record(Callback):
    def __init__(self, optimizer):
        self.optimizer, self.seen = optimizer, []

    def on_epoch_end(self, model, history):
        self.seen.append(self.optimizer.state_dict())
        return False


def test_a_callback_sees_the_optimizer_state_of_the_epoch():
    steps = {}
    for engine in ENGINES:
        model = _model()
        opt = optim.Adam(model.parameters(), lr=1e-2)
        cb = _Record(opt)
        _fit(model, engine, opt=opt, epochs=3, callbacks=[cb])
        steps[engine] = cb.seen
    assert [s["state"][0]["step"] for s in steps["compiled"]] == [6, 12, 18]
    for got, want in zip(steps["compiled"], steps["layers"]):
        for i, entry in want["state"].items():
            for k, v in entry.items():
                np.testing.assert_allclose(got["state"][i][k], v, rtol=1e-10, atol=1e-12)


def test_a_parameter_given_another_shape_mid_fit_is_refused_by_the_compiled_engine():
    model = _model()

    def shrink(history):
        model[0].weight.data = model[0].weight.data[:4]
        return False
    with pytest.raises(ValueError, match=r"parameter 0 of the model changed to shape \(4, 5\)"):
        _fit(model, "compiled", callbacks=[shrink])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_diverging_fit_leaves_the_held_arrays_in_place_with_the_last_good_values(engine):
    X, y = _data()
    X[40] = np.nan              # epoch 1's shuffle puts it in some batch: that step diverges
    model = _with_grads(_model())
    held = _held(model)
    with pytest.raises(DivergenceError):
        _fit(model, engine, data=(X, y))
    now = _held(model)
    for name, array in held.items():
        assert now[name] is array and np.isfinite(array).all(), name


def _resumable(seed):
    """A model and optimizer whose run uses every kind of state (buffers, dropout, moments)."""
    model = _model(seed)
    return model, optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_fit_resumed_from_saved_state_equals_the_uninterrupted_fit(engine, tmp_path):
    X, y = _data()
    kw = dict(batch_size=16, rng=3, progress=False, engine=engine, l2=1e-3,
              schedule=optim.warmup_cosine(0.02, 4, 30))
    model, opt = _resumable(0)
    whole = fit(model, X, y, optimizer=opt, epochs=5, **kw)

    first, first_opt = _resumable(0)
    head = fit(first, X, y, optimizer=first_opt, epochs=2, **kw)
    first.save(tmp_path / "model.npz")
    saved = pickle.dumps(first_opt.state_dict())

    resumed, resumed_opt = _resumable(9)         # fresh objects, other initial weights
    resumed.load(tmp_path / "model.npz")
    resumed_opt.load_state_dict(pickle.loads(saved))
    tail = fit(resumed, X, y, optimizer=resumed_opt, epochs=5, initial_epoch=2, **kw)

    assert tail["epoch"] == [3, 4, 5]
    assert head["step_loss"] + tail["step_loss"] == whole["step_loss"]
    assert head["lr"] + tail["lr"] == whole["lr"]
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    for got, want in zip(resumed_opt.state, opt.state):
        assert got["step"] == want["step"] == 30
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_initial_epoch_is_checked():
    X, y = _data()
    with pytest.raises(ValueError, match="initial_epoch"):
        fit(_model(), X, y, epochs=2, initial_epoch=3, progress=False)
    hist = fit(_model(), X, y, epochs=2, initial_epoch=2, progress=False)
    assert hist["epoch"] == [] and hist["step_loss"] == []
