"""The fit loop: accuracy on real data vs scikit-learn and torch, the lesson's poor vs
good setup, symmetry of zero init, determinism, divergence, regularization, helpers."""
import warnings

import numpy as np
import pytest

from fastnn import nn, optim, train
from fastnn.train import DivergenceError, evaluate, fit, predict, predict_proba


@pytest.fixture(scope="module", autouse=True)
def _serial_blas():
    """One BLAS thread: small-batch training is a stream of tiny matrix products, and
    OpenBLAS's thread team costs more than it saves on them (26x slower measured on
    a loaded 2-core machine).  Applies to scikit-learn's MLP as well."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


SEED = 0  # the digits split (75/25, stratified) and every initialization
HIDDEN, EPOCHS, BATCH, PEAK_LR, WARMUP_EPOCHS = 256, 20, 32, 1e-3, 2


@pytest.fixture(scope="module")
def digits():
    """load_digits, 75/25 stratified split (random_state=SEED), raw and standardized."""
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_digits(return_X_y=True)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, stratify=y, random_state=SEED)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd[sd == 0] = 1  # constant pixels (always 0 at the border)
    return {"raw": (Xtr.astype(np.float32), ytr, Xva.astype(np.float32), yva),
            "std": (((Xtr - mu) / sd).astype(np.float32), ytr,
                    ((Xva - mu) / sd).astype(np.float32), yva)}


def _mlp(init="he", hidden=HIDDEN, depth=2, seed=SEED, n_in=64, n_out=10, **kw):
    layers, width = [], n_in
    for i in range(depth):
        layers += [nn.Linear(width, hidden, init=init, rng=seed + i, **kw), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, n_out, init=init, rng=seed + depth, **kw))


def _schedule(n_train):
    spe = train.steps_per_epoch(n_train, BATCH)
    return optim.warmup_cosine(PEAK_LR, WARMUP_EPOCHS * spe, EPOCHS * spe)


@pytest.fixture(scope="module")
def fastnn_digits(digits):
    Xtr, ytr, Xva, yva = digits["std"]
    model = _mlp()
    hist = fit(model, Xtr, ytr, optimizer=optim.Adam(model.parameters()), epochs=EPOCHS,
               batch_size=BATCH, schedule=_schedule(len(Xtr)), validation=(Xva, yva), rng=SEED,
               progress=False)
    return model, hist


@pytest.mark.slow
def test_digits_reaches_97_percent(fastnn_digits, digits):
    model, hist = fastnn_digits
    Xva, yva = digits["std"][2:]
    assert hist["val_accuracy"][-1] >= 0.97
    assert evaluate(model, Xva, yva)["accuracy"] == hist["val_accuracy"][-1]
    assert hist["train_loss"][-1] < 0.1 * hist["train_loss"][0]


@pytest.mark.slow
def test_digits_within_1_5_points_of_sklearn(fastnn_digits, digits):
    from sklearn.neural_network import MLPClassifier

    Xtr, ytr, Xva, yva = digits["std"]
    # Same architecture, optimizer, batch size, epochs and no penalty; scikit-learn
    # has no warmup/cosine schedule, so it runs Adam at the constant peak rate.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_iter reached": intended
        clf = MLPClassifier((HIDDEN, HIDDEN), solver="adam", alpha=0.0, batch_size=BATCH,
                            learning_rate_init=PEAK_LR, max_iter=EPOCHS, random_state=SEED,
                            n_iter_no_change=EPOCHS + 1, tol=0.0).fit(Xtr, ytr)
    ours = fastnn_digits[1]["val_accuracy"][-1]
    assert abs(ours - clf.score(Xva, yva)) <= 0.015


@pytest.mark.slow
def test_digits_within_1_5_points_of_torch(fastnn_digits, digits, torch):
    Xtr, ytr, Xva, yva = digits["std"]
    torch.manual_seed(SEED)
    tnn = torch.nn
    model = tnn.Sequential(tnn.Linear(64, HIDDEN), tnn.ReLU(), tnn.Linear(HIDDEN, HIDDEN),
                           tnn.ReLU(), tnn.Linear(HIDDEN, 10))
    for m in model:
        if isinstance(m, tnn.Linear):
            tnn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            tnn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(len(Xtr)))  # lr = 1.0 * schedule(step)
    gen = torch.Generator().manual_seed(SEED)
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    steps = train.steps_per_epoch(len(Xtr), BATCH)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH if i < steps - 1 else len(Xt)]
            opt.zero_grad()
            tnn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        theirs = float((model(torch.from_numpy(Xva)).argmax(1).numpy() == yva).mean())
    ours = fastnn_digits[1]["val_accuracy"][-1]
    assert abs(ours - theirs) <= 0.015


def test_poor_setup_stays_near_chance_good_setup_learns(digits):
    """The lesson's opening figure: raw data + zero init vs standardized + He, same seed."""
    results = {}
    for name, data, init in (("poor", "raw", "zeros"), ("good", "std", "he")):
        Xtr, ytr, Xva, yva = digits[data]
        model = _mlp(init=init, hidden=16)
        hist = fit(model, Xtr, ytr, optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=5,
                   batch_size=64, validation=(Xva, yva), rng=SEED, progress=False)
        results[name] = hist
    assert results["poor"]["val_accuracy"][-1] <= 0.2  # chance is 0.1
    assert results["good"]["val_accuracy"][-1] >= 0.9
    assert results["good"]["train_loss"][-1] < 0.5 * results["poor"]["train_loss"][-1]


@pytest.mark.parametrize("init", ["zeros", "constant"])
def test_symmetric_init_stays_symmetric(digits, init):
    """Identical hidden units get identical gradients and stay identical forever."""
    Xtr, ytr = digits["std"][:2]
    model = _mlp(init="zeros", hidden=8, n_out=10)
    if init == "constant":  # non-zero, so the units do move, but all together
        for p in model.parameters():
            p.data[...] = 0.1
    before = [p.data.copy() for p in model.parameters()]
    fit(model, Xtr, ytr, optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        epochs=2, batch_size=32, rng=SEED, progress=False)
    hidden = [model[0], model[2]]
    for layer in hidden:
        w, b = layer.weight.data, layer.bias.data
        np.testing.assert_array_equal(w, np.broadcast_to(w[:1], w.shape))  # all rows identical
        np.testing.assert_array_equal(b, b[0])
    for layer in (model[2], model[4]):  # every hidden unit feeds the next layer identically
        w = layer.weight.data
        np.testing.assert_array_equal(w, np.broadcast_to(w[:, :1], w.shape))
    if init == "constant":
        assert not np.array_equal(before[0], model[0].weight.data)  # they did train
    acts = model[:2].eval()(Xtr)
    np.testing.assert_array_equal(acts, np.broadcast_to(acts[:, :1], acts.shape))


# -- the loop's contract ---------------------------------------------------------------
def _blobs(n=200, d=5, k=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.standard_normal((k, d)) * 3
    return (centers[y] + rng.standard_normal((n, d))).astype(dtype), y


def _small(seed=0, dropout=0.0, bn=False, dtype=np.float32, n_out=3):
    layers = [nn.Linear(5, 16, rng=seed, dtype=dtype)]
    if bn:
        layers.append(nn.BatchNorm1d(16, dtype=dtype))
    layers += [nn.ReLU(), nn.Dropout(dropout, rng=123),
               nn.Linear(16, n_out, rng=seed + 1, dtype=dtype)]
    return nn.Sequential(*layers)


def test_deterministic_for_a_seed():
    X, y = _blobs()
    runs = []
    for rng in (7, 7, 8):
        model = _small(dropout=0.3, bn=True)
        hist = fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=3,
                   batch_size=16, rng=rng, validation=(X, y), progress=False)
        runs.append((hist, model.state_dict()))
    (h1, s1), (h2, s2), (h3, s3) = runs
    assert h1 == h2
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert h1["step_loss"] != h3["step_loss"]


def test_history_contents_and_schedule():
    X, y = _blobs(n=100)
    model = _small()
    sched = optim.step_decay(0.1, step_size=4, gamma=0.5)
    hist = fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=1.0), epochs=3,
               batch_size=32, schedule=sched, validation=(X[:30], y[:30]), progress=False, rng=0)
    assert set(hist) == {"epoch", "train_loss", "penalty", "lr", "step_loss", "train_accuracy",
                         "val_loss", "val_accuracy", "engine"}
    assert hist["engine"] == "compiled"
    spe = train.steps_per_epoch(100, 32)
    assert spe == 4 and len(hist["step_loss"]) == 3 * spe
    assert hist["epoch"] == [1, 2, 3]
    assert hist["lr"] == [sched(spe * e - 1) for e in (1, 2, 3)]  # lr of each epoch's last step
    assert all(len(v) == 3 for k, v in hist.items() if k not in ("step_loss", "engine"))
    assert hist["val_loss"][-1] == pytest.approx(evaluate(model, X[:30], y[:30])["loss"])
    assert model.training  # left in training mode, as torch's loops do
    assert fit(_small(), X, y, epochs=0, progress=False)["train_loss"] == []


def test_last_batch_of_one_is_merged():
    X, y = _blobs(n=33)
    assert train.steps_per_epoch(33, 32) == 1 and train.steps_per_epoch(64, 32) == 2
    assert train.steps_per_epoch(65, 32) == 2 and train.steps_per_epoch(1, 32) == 1
    hist = fit(_small(bn=True), X, y, epochs=2, batch_size=32, progress=False, rng=0)
    assert len(hist["step_loss"]) == 2  # batch norm never saw a batch of one


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_names_epoch_and_step():
    X, y = _blobs(n=64)
    reg = _small(n_out=1)
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+/4") as info:
        fit(reg, X * 1e3, y.astype(np.float32) * 1e3, loss="mse",
            optimizer=optim.SGD(reg.parameters(), lr=1e3), epochs=20, batch_size=16, rng=0,
            progress=False)
    err = info.value
    assert err.epoch >= 1 and 1 <= err.step <= 4 and not np.isfinite(err.loss)
    assert len(err.history["train_loss"]) == err.epoch - 1
    assert f"epoch {err.epoch}, step {err.step}/4" in str(err)
    Xnan = X.copy()
    Xnan[5, 2] = np.nan
    with pytest.raises(DivergenceError, match="epoch 1, step 1/"):
        fit(_small(), Xnan, y, epochs=1, batch_size=64, shuffle=False, progress=False)


def test_divergence_leaves_batch_norm_running_stats_finite():
    """The diverging batch's NaN statistics must not be left in the running buffers."""
    X, y = _blobs(n=64)
    model = _small(bn=True)
    Xnan = X.copy()
    Xnan[5, 2] = np.nan
    with pytest.raises(DivergenceError):
        fit(model, Xnan, y, epochs=1, batch_size=64, shuffle=False, progress=False)
    for name, buf in model.named_buffers():
        assert np.all(np.isfinite(buf)), name


def test_l2_penalty_equals_sgd_weight_decay():
    """lambda * sum w^2 has gradient 2 lambda w: SGD weight_decay = 2 lambda, same steps."""
    X, y = _blobs(dtype=np.float64)
    a, b = _small(dtype=np.float64), _small(dtype=np.float64)
    fit(a, X, y, optimizer=optim.SGD(a.parameters(), lr=0.1), l2=0.05, epochs=2, rng=1,
        progress=False)
    fit(b, X, y, optimizer=optim.SGD(b.parameters(), lr=0.1, weight_decay=0.1), epochs=2, rng=1,
        progress=False)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-10, atol=1e-12, err_msg=name)


def test_l1_sparsifies_and_max_norm_bounds_rows():
    X, y = _blobs()
    plain, sparse, bounded = _small(), _small(), _small()
    for model, kw in ((plain, {}), (sparse, {"l1": 0.05}), (bounded, {"max_norm": 0.5})):
        hist = fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.05), epochs=5,
                   rng=0, progress=False, **kw)

    def small(m):
        return np.mean(np.abs(m[0].weight.data) < 1e-2)
    assert small(sparse) > 2 * small(plain)
    for layer in (bounded[0], bounded[3]):
        assert np.linalg.norm(layer.weight.data, axis=1).max() <= 0.5 * (1 + 1e-6)
    assert np.linalg.norm(plain[0].weight.data, axis=1).max() > 0.5
    assert hist["penalty"] == [0.0] * 5  # max-norm is a constraint, not a penalty


@pytest.mark.parametrize("loss", ["hinge", "cross_entropy"])
def test_classification_losses_learn(loss):
    X, y = _blobs()
    model = _small()
    hist = fit(model, X, y, loss=loss, optimizer=optim.Adam(model.parameters(), lr=1e-2),
               epochs=10, rng=0, progress=False, validation=(X, y))
    assert hist["val_accuracy"][-1] >= 0.95 and hist["train_loss"][-1] < hist["train_loss"][0]


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_regression_losses_learn(loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 5)).astype(np.float32)
    t = (X @ np.arange(1, 6) / 5 + 0.1 * rng.standard_normal(256)).astype(np.float32)
    model = _small(n_out=1)
    hist = fit(model, X, t, loss=loss, optimizer=optim.Adam(model.parameters(), lr=1e-2),
               epochs=15, rng=0, progress=False, validation=(X, t))
    assert "val_accuracy" not in hist and "train_accuracy" not in hist
    assert hist["val_loss"][-1] < 0.2 * hist["val_loss"][0]
    assert predict(model, X).shape == (256, 1)


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_binary_cross_entropy_learns_multilabel_with_subset_accuracy(engine):
    X, labels = _blobs(n=300)
    # three overlapping labels: the class is 0, the class is not 1, the first feature > 0
    Y = np.stack([labels == 0, labels != 1, X[:, 0] > 0], axis=1).astype(np.float32)
    model = _small()
    hist = fit(model, X, Y, loss="binary_cross_entropy", engine=engine, epochs=15, rng=0,
               optimizer=optim.Adam(model.parameters(), lr=1e-2), progress=False,
               validation=(X, Y))
    assert hist["engine"].startswith(engine)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    scores = predict(model, X)
    subset = np.mean(np.all((scores > 0) == (Y > 0.5), axis=1))
    assert hist["val_accuracy"][-1] == pytest.approx(subset) and subset >= 0.85
    result = evaluate(model, X, Y, loss="binary_cross_entropy")
    assert result == {"loss": pytest.approx(hist["val_loss"][-1]), "accuracy": subset}
    proba = predict_proba(model, X, loss="binary_cross_entropy")
    # independent sigmoids (rows do not sum to 1), computed in the model's dtype
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-scores.astype(np.float64))),
                               rtol=1e-6, atol=1e-7)
    # one label as a (N,) target: one output
    one = _small(n_out=1)
    h1 = fit(one, X, Y[:, 0], loss="binary_cross_entropy", epochs=3, rng=0, progress=False)
    assert len(h1["train_accuracy"]) == 3


def test_binary_cross_entropy_targets_are_checked_up_front():
    X, labels = _blobs(n=40)
    Y = np.zeros((40, 3))
    Y[7, 2] = 1.5
    with pytest.raises(ValueError, match=r"y\[7, 2\] = 1.5"):
        fit(_small(), X, Y, loss="binary_cross_entropy", progress=False)
    with pytest.raises(ValueError, match=r"y_val\[7, 2\] = 1.5"):
        fit(_small(), X, np.zeros((40, 3)), loss="binary_cross_entropy", progress=False,
            validation=(X, Y))
    with pytest.raises(ValueError, match="2 column"):
        fit(_small(), X, Y[:, :2], loss="binary_cross_entropy", progress=False)
    with pytest.raises(ValueError, match="unknown loss"):
        predict_proba(_small(), X, loss="mse")


def test_predict_helpers_restore_mode():
    X, y = _blobs(n=50)
    model = _small(dropout=0.5, bn=True)
    fit(model, X, y, epochs=2, rng=0, progress=False)
    model.train()
    scores = predict(model, X)
    assert model.training and all(m.training for m in model.modules())
    # eval mode is deterministic (BLAS rounding may differ with the chunk size)
    np.testing.assert_allclose(scores, predict(model, X, batch_size=7), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores, model.eval()(X))
    proba = predict_proba(model, X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(1), scores.argmax(1))
    result = evaluate(model, X, y)
    assert result["accuracy"] == np.mean(scores.argmax(1) == y)
    # converted to the model's dtype
    assert predict(model, X.astype(np.float64)).dtype == np.float32


def test_progress_bar_is_silent_off_terminal(capsys):
    X, y = _blobs(n=40)
    fit(_small(), X, y, epochs=2, progress=True, rng=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(loss="nll"), ValueError, "loss"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(max_norm=0.0), ValueError, "max_norm"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
    (dict(schedule=0.1), TypeError, "schedule"),
    (dict(validation=(np.zeros((3, 5)),)), ValueError, "validation"),
    (dict(validation=(np.zeros((3, 4)), np.zeros(3, int))), ValueError, "X_val"),
    (dict(validation=(np.zeros((0, 5)), np.zeros(0, int))), ValueError, "X_val has no samples"),
])
def test_fit_bad_arguments(kwargs, exc, match):
    X, y = _blobs(n=20)
    model = _small()
    before = model.state_dict()
    with pytest.raises(exc, match=match):
        fit(model, X, y, progress=False, **kwargs)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_fit_bad_data():
    X, y = _blobs(n=20)
    model = _small()
    with pytest.raises(IndexError, match="out of range"):
        fit(model, X, np.where(y == 0, 3, y), progress=False)
    with pytest.raises(IndexError):
        fit(model, X, np.where(y == 0, -1, y), progress=False)
    with pytest.raises(TypeError, match="integer"):
        fit(model, X, y.astype(np.float64), progress=False)
    with pytest.raises(ValueError, match="shape"):
        fit(model, X, y[:-1], progress=False)
    with pytest.raises(ValueError, match="2-D"):
        fit(model, X[0], y, progress=False)
    with pytest.raises(ValueError, match="no samples"):
        fit(model, X[:0], y[:0], progress=False)
    with pytest.raises(ValueError, match="column"):
        fit(_small(n_out=2), X, np.zeros((20, 3), np.float32), loss="mse", progress=False)


@pytest.mark.parametrize("engine", ["layers", "compiled"])
def test_validation_costs_one_forward_per_epoch(engine):
    # X_val is validated once; each epoch's evaluation is one eval-mode forward.
    X, y = _blobs(n=20)
    model = _small()
    calls = []
    forward, infer = model.forward, model.infer
    model.forward = lambda x: calls.append(("forward", x.shape[0])) or forward(x)
    model.infer = lambda x: calls.append(("infer", x.shape[0])) or infer(x)
    fit(model, X, y, epochs=3, batch_size=10, validation=(X[:7], y[:7]), progress=False,
        engine=engine)
    # setup: one row each to size y and y_val; then per epoch 2 batches (layer path
    # only: the compiled engine trains without Python forwards) + 1 evaluation
    batches = [("forward", 10), ("forward", 10)] if engine == "layers" else []
    assert calls == [("infer", 1)] * 2 + (batches + [("infer", 7)]) * 3


def test_predict_never_toggles_the_models_mode(monkeypatch):
    model = _small(dropout=0.5, bn=True)
    X, y = _blobs(n=40)
    toggles = []
    monkeypatch.setattr(nn.Module, "train", lambda self, mode=True: toggles.append(mode))
    predict(model, X)
    predict_proba(model, X)
    evaluate(model, X, y)
    assert toggles == []
    assert all(m.training for m in model.modules())


def test_concurrent_predictions_equal_single_threaded_ones():
    import threading
    model = _small(dropout=0.5, bn=True)
    X, y = _blobs(n=64)
    fit(model, X, y, epochs=2, batch_size=16, progress=False, rng=0)   # leaves it training
    want = predict(model, X)
    state = model.state_dict()
    results, errors = [], []

    def worker():
        try:
            for _ in range(30):
                results.append(predict(model, X, batch_size=16))
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_fit_with_inputs_of_the_wrong_width_names_their_shape():
    model = _small()
    X, y = _blobs(n=20, d=5)
    with pytest.raises(ValueError, match=r"X has 4 features \(shape \(20, 4\)\) but the model "
                                         r"expects 5"):
        fit(model, X[:, :4], y, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"X_val|validation|features"):
        fit(model, X, y, epochs=1, progress=False, validation=(X[:, :3], y))


@pytest.mark.parametrize("kw", [dict(l2=np.inf), dict(l1=np.inf), dict(l2=float("inf"), l1=1e-3)])
def test_infinite_penalties_are_refused_up_front_by_their_names(kw):
    model = _small(bn=True)
    X, y = _blobs(n=20)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    name = "l2" if "l2" in kw else "l1"
    with pytest.raises(ValueError, match=rf"^{name} must be < inf"):
        fit(model, X, y, epochs=1, batch_size=10, progress=False, **kw)
    for k, v in model.state_dict().items():          # no step ran: running stats untouched
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_the_width_check_follows_the_forward_order_and_trusts_custom_layers():
    class Expand(nn.Module):          # a custom first layer: 3 features in, 6 out
        def forward(self, x):
            return np.concatenate([x, x], axis=1)

        def infer(self, x):
            return self.forward(x)

        def backward(self, dy):
            return dy[:, :3] + dy[:, 3:]

    model = nn.Sequential(Expand(), nn.Linear(6, 2, rng=0))
    assert predict(model, np.ones((2, 3), np.float32)).shape == (2, 2)
    # past activations and dropout to the first sized layer
    model = nn.Sequential(nn.Sequential(nn.ReLU(), nn.Dropout(0.1)), nn.Linear(5, 2, rng=0))
    with pytest.raises(ValueError, match=r"X has 4 features \(shape \(3, 4\)\) but the model "
                                         r"expects 5"):
        predict(model, np.ones((3, 4), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_predict_proba_is_accurate_in_the_tails(dtype):
    model = nn.Sequential(nn.Linear(1, 1, rng=0, dtype=dtype))
    model[0].weight.data[...] = 1
    model[0].bias.data[...] = 0
    logits = np.array([[-80.0], [-20.0], [-17.0], [-1e-3], [0.0], [5.0], [30.0]], dtype)
    proba = predict_proba(model, logits, loss="binary_cross_entropy")
    want = 1 / (1 + np.exp(-logits.astype(np.float64)))    # 1.8e-35 at -80: a float32 too
    np.testing.assert_allclose(proba, want, rtol=4 * np.finfo(dtype).eps, atol=0)
