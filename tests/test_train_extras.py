"""train.fit(sample_weight=..., callbacks=[...]): weighted batch means (checked against torch and
duplication) and the per-epoch callback."""
import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.train import LOSSES, _weighted_loss, fit

N, D, C = 40, 5, 3


def _data(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    if loss in ("cross_entropy", "hinge"):
        return X, rng.integers(0, C, N)
    if loss == "binary_cross_entropy":
        return X, _labels_and_soft_targets(rng, (N, C))
    return X, rng.standard_normal((N, C))


def _labels_and_soft_targets(rng, shape):
    """0/1 labels, with one soft target in [0, 1] in every other row."""
    t = (rng.random(shape) > 0.5).astype(np.float64)
    t[::2, 0] = rng.random(t[::2, 0].shape)
    return t


def _model():
    return nn.Sequential(nn.Linear(D, 7, activation="tanh", rng=0, dtype=np.float64),
                         nn.Linear(7, C, rng=1, dtype=np.float64))


def _fit(X, y, loss, w, **kw):
    model = _model()
    kw.setdefault("batch_size", 8)
    hist = fit(model, X, y, loss=loss, optimizer=optim.SGD(model.parameters(), lr=0.1),
               epochs=2, rng=0, progress=False, sample_weight=w, **kw)
    return hist, model


@pytest.mark.parametrize("loss", LOSSES)
def test_unit_weights_equal_the_unweighted_run(loss):
    X, y = _data(loss)
    h1, m1 = _fit(X, y, loss, np.ones(N), engine="layers")
    h0, m0 = _fit(X, y, loss, None, engine="layers")
    np.testing.assert_allclose(h1["step_loss"], h0["step_loss"], rtol=1e-12)
    for k, v in m1.state_dict().items():
        np.testing.assert_allclose(v, m0.state_dict()[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weight_equals_repeating_the_sample(loss):
    """One full-batch step, no shuffle: weight k on a row == that row k times."""
    X, y = _data(loss)
    w = np.ones(N)
    w[[3, 11]] = [3.0, 2.0]
    rep = np.r_[np.arange(N), 3, 3, 11]
    hw, mw = _fit(X, y, loss, w, batch_size=N, shuffle=False)
    hr, mr = _fit(X[rep], y[rep], loss, None, batch_size=N + 3, shuffle=False,
                  engine="layers")
    np.testing.assert_allclose(hw["step_loss"], hr["step_loss"], rtol=1e-12)
    for k, v in mw.state_dict().items():
        np.testing.assert_allclose(v, mr.state_dict()[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_loss_and_gradient_against_torch(loss, torch):
    rng = np.random.default_rng(1)
    out = rng.standard_normal((9, C))
    if loss in ("cross_entropy", "hinge"):
        y = rng.integers(0, C, 9)
    elif loss == "binary_cross_entropy":
        y = _labels_and_soft_targets(rng, (9, C))
    else:
        y = rng.standard_normal((9, C))
    w = rng.uniform(0, 3, 9)
    value, grad = _weighted_loss(loss, out, y, w)
    t = torch.tensor(out, requires_grad=True)
    tf = torch.nn.functional
    if loss == "cross_entropy":
        rows = tf.cross_entropy(t, torch.tensor(y), reduction="none")
    elif loss == "hinge":
        rows = tf.multi_margin_loss(t, torch.tensor(y), reduction="none") * C
    elif loss == "mse":
        rows = ((t - torch.tensor(y)) ** 2).mean(1)
    elif loss == "binary_cross_entropy":
        rows = tf.binary_cross_entropy_with_logits(t, torch.tensor(y), reduction="none").mean(1)
    else:
        rows = (t - torch.tensor(y)).abs().mean(1)
    tw = torch.tensor(w)
    ref = (rows * tw).sum() / tw.sum()
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=1e-14)


def _model_bn_dropout():
    return nn.Sequential(nn.Linear(D, 7, rng=0, dtype=np.float64),
                         nn.BatchNorm1d(7, dtype=np.float64), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(7, C, rng=1, dtype=np.float64))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("make", [_model, _model_bn_dropout], ids=["tanh", "bn_dropout"])
def test_weighted_compiled_engine_equals_layers(loss, make):
    X, y = _data(loss)
    w = np.random.default_rng(2).uniform(0, 2, N)
    w[:8] = 0.0          # zero weights too
    runs = {}
    for eng in ("compiled", "layers"):
        model = make()
        opt = optim.Adam(model.parameters(), lr=0.01)
        hist = fit(model, X, y, loss=loss, optimizer=opt, epochs=3, batch_size=8, rng=0,
                   progress=False, sample_weight=w, engine=eng, l2=1e-3)
        runs[eng] = (hist, model)
    assert runs["compiled"][0]["engine"] == "compiled"
    np.testing.assert_allclose(runs["compiled"][0]["step_loss"], runs["layers"][0]["step_loss"],
                               rtol=1e-10, atol=1e-14)
    # atol: the bias of a Linear before BatchNorm has a zero gradient up to rounding,
    # which Adam turns into steps of ~1e-10 that differ between the two paths.
    want = runs["layers"][1].state_dict()
    for k, v in runs["compiled"][1].state_dict().items():
        np.testing.assert_allclose(v, want[k], rtol=1e-9, atol=1e-8, err_msg=k)


def test_all_zero_batch_takes_a_zero_data_gradient_step():
    X, y = _data("mse")
    w = np.r_[np.zeros(8), np.ones(N - 8)]
    for eng in ("compiled", "layers"):
        model = _model()
        before = model.state_dict()
        hist = fit(model, X[:8], y[:8], loss="mse", optimizer=optim.SGD(model.parameters(), lr=1),
                   epochs=1, batch_size=8, progress=False, sample_weight=w[:8], engine=eng)
        assert hist["step_loss"] == [0.0]
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("engine", ["compiled", "layers"])
@pytest.mark.parametrize("scale", [1e-320, 2.0 ** -1074, 1e308, 1.7e308])
def test_tiny_and_huge_weights_train_as_unit_weights(engine, scale):
    """Only the ratios of the weights matter.  Weights of 1e-320 made the compiled
    engine raise DivergenceError (w * (1 / total) = inf) while the layer path
    trained; weights of 1e308, whose batch sum overflows, silently stopped
    training on both.  fit scales them by a power of two (exact), so the run
    is the unit-weight run up to the rounding of w / sum(w)."""
    X, y = _data("mse")
    got, m1 = _fit(X, y, "mse", np.full(N, scale), engine=engine)
    want, m0 = _fit(X, y, "mse", np.ones(N), engine=engine)
    assert got["engine"].startswith(engine)
    np.testing.assert_allclose(got["step_loss"], want["step_loss"], rtol=1e-13)
    for k, v in m1.state_dict().items():
        np.testing.assert_allclose(v, m0.state_dict()[k], rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("loss", LOSSES)
def test_subnormal_batch_weight_sums_train_on_both_engines(loss):
    """Weights 1 and 1e-320: after scaling, the batches of small weights still sum
    to a subnormal number, which the compiled engine must divide by, not
    multiply by the (infinite) reciprocal of.  Equal weights within every
    batch: both engines give the unweighted run."""
    X, y = _data(loss)
    w = np.r_[np.ones(16), np.full(N - 16, 1e-320)]
    want, m0 = _fit(X, y, loss, None, shuffle=False, engine="layers")
    for engine in ("compiled", "layers"):
        got, m1 = _fit(X, y, loss, w, shuffle=False, engine=engine)
        assert got["engine"].startswith(engine)
        np.testing.assert_allclose(got["step_loss"], want["step_loss"], rtol=1e-12, err_msg=engine)
        for k, v in m1.state_dict().items():
            np.testing.assert_allclose(v, m0.state_dict()[k], rtol=1e-10, atol=1e-13,
                                       err_msg=f"{engine} {k}")


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_weights_wider_than_float64_are_refused_by_name_before_training(engine):
    """1e-300 next to 1e300 would scale to 0: refused, naming the weight, on both engines."""
    X, y = _data("cross_entropy")
    w = np.r_[np.full(N - 1, 1e300), 1e-300]
    model = _model()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"sample_weight\[39\] = 1e-300 is below 2\*\*-1074 "
                                         r"times the largest weight, 1e\+300"):
        fit(model, X, y, epochs=1, progress=False, sample_weight=w, engine=engine)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("w,match", [(-np.ones(N), r"sample_weight\[0\] = -1.0"),
                                     (np.r_[np.ones(N - 1), np.nan], r"sample_weight\[39\]"),
                                     (np.ones(N + 1), r"shape \(40,\)"),
                                     (np.array(["a"] * N), "real numbers")])
def test_bad_weights_are_refused_by_name(w, match):
    X, y = _data("cross_entropy")
    with pytest.raises((ValueError, TypeError), match=match):
        _fit(X, y, "cross_entropy", w)


def test_callback_stops_and_one_call_equals_epoch_by_epoch_calls():
    X, y = _data("cross_entropy")
    seen = []

    def stop_after_3(history):
        seen.append(history["epoch"][-1])
        return len(history["epoch"]) == 3

    m1 = _model()
    opt1 = optim.Adam(m1.parameters(), lr=0.01)
    h1 = fit(m1, X, y, optimizer=opt1, epochs=10, batch_size=8, rng=np.random.default_rng(0),
             progress=False, callbacks=[stop_after_3])
    assert seen == [1, 2, 3] and h1["epoch"] == [1, 2, 3] and h1["engine"] == "compiled"
    m2 = _model()
    opt2 = optim.Adam(m2.parameters(), lr=0.01)
    gen = np.random.default_rng(0)
    losses = []
    for _ in range(3):
        losses += fit(m2, X, y, optimizer=opt2, epochs=1, batch_size=8, rng=gen,
                      progress=False)["step_loss"]
    np.testing.assert_allclose(h1["step_loss"], losses, rtol=1e-12)


def test_callback_may_set_the_next_epochs_lr():
    X, y = _data("cross_entropy")
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def halve(history):
        opt.lr /= 2

    hist = fit(model, X, y, optimizer=opt, epochs=3, batch_size=8, rng=0, progress=False,
               callbacks=[halve])
    assert hist["lr"] == [0.1, 0.05, 0.025]
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a fastnn.callbacks.Callback"):
        fit(model, X, y, optimizer=opt, epochs=1, callbacks=[halve, 3])
    with pytest.raises(TypeError, match="callbacks must be a list"):
        fit(model, X, y, optimizer=opt, epochs=1, callbacks=halve)


@pytest.mark.parametrize("engine", ["auto", "compiled", "layers"])
def test_an_optimizer_of_another_model_is_refused_before_training(engine):
    """After copy.deepcopy(model), an optimizer over the original trained nothing, silently."""
    import copy

    X, y = _data("cross_entropy")
    original = _model()
    opt = optim.Adam(original.parameters(), lr=0.1)
    clone = copy.deepcopy(original)
    before = {k: v.copy() for k, v in clone.state_dict().items()}
    with pytest.raises(ValueError, match=r"optimizer.params\[0\] \(shape \(7, 5\)\) is not a "
                                         "parameter of the model"):
        fit(clone, X, y, optimizer=opt, epochs=1, progress=False, engine=engine)
    # one foreign parameter among the model's own is refused too, by its index
    mixed = optim.SGD(clone.parameters()[:3] + original.parameters()[3:], lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer.params\[3\] \(shape \(3,\)\)"):
        fit(clone, X, y, optimizer=mixed, epochs=1, progress=False, engine=engine)
    for k, v in clone.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
        np.testing.assert_array_equal(original.state_dict()[k], before[k], err_msg=k)
    assert all(not s for s in opt.state + mixed.state)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_an_optimizer_over_some_of_the_models_parameters_trains_only_those(engine):
    X, y = _data("cross_entropy")
    model = _model()
    frozen = {k: v.copy() for k, v in model.state_dict().items()}
    opt = optim.SGD(model[1].parameters(), lr=0.1)   # the first layer frozen
    fit(model, X, y, optimizer=opt, epochs=1, progress=False, engine=engine)
    after = model.state_dict()
    for k in frozen:
        same = np.array_equal(after[k], frozen[k])
        assert same == k.startswith("0."), k
