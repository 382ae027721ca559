"""The compiled training engine against the layer-by-layer path (the reference).

Both paths of ``fit`` must take the same steps: same shuffles, bit-identical
dropout masks, the same kernels for every rule.  Final parameters, buffers,
gradients and optimizer state are equal, bit for bit, in float64 and in
float32; the reported losses to the rounding of a sum (see SUM_RTOL).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from fastnn import engine, nn, optim
from fastnn.train import DivergenceError, fit, fit_many

N, D, C = 100, 6, 3   # 100 rows at batch 16: 6 full batches + one of 4, 7 steps per epoch
EPOCHS = 2            # 14 steps


def _data(loss, dtype=np.float64, n=N, d=D, c=C, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss in ("cross_entropy", "hinge"):
        y = (X[:, :c] @ rng.standard_normal(c) > 0).astype(np.int64) + (X[:, 0] > 1)
        return X, y
    noise = rng.standard_normal((n, c))
    if loss == "binary_cross_entropy":
        # 0/1 labels of a noisy linear rule, and some soft targets
        t = (X[:, :c] + 0.5 * noise > 0).astype(dtype)
        t[::5, -1] = 0.3
        return X, t
    return X, (X[:, :c] * 0.5 + noise * 0.1).astype(dtype)


def _mlp(dtype=np.float64, bn=False, dropout=0.0, act="relu", out=C):
    layers = [nn.Linear(D, 8, rng=0, dtype=dtype)]
    layers += [{"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
                "leaky_relu": nn.LeakyReLU(0.1)}[act]]
    if bn:
        layers.append(nn.BatchNorm1d(8, dtype=dtype))
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(8, 5, rng=1, dtype=dtype, activation="tanh"), nn.Sigmoid(),
               nn.Linear(5, out, rng=2, dtype=dtype)]
    return nn.Sequential(*layers)


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05),
    "sgd_momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd_nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adam_wd": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2),
}


def _train(make_model, engine_name, loss="cross_entropy", opt="adam", dtype=np.float64,
           **kwargs):
    X, y = kwargs.pop("data", None) or _data(loss, dtype)
    model = make_model()
    optimizer = OPTIMIZERS[opt](model.parameters())
    kwargs.setdefault("epochs", EPOCHS)
    kwargs.setdefault("batch_size", 16)
    hist = fit(model, X, y, loss=loss, optimizer=optimizer, rng=0,
               progress=False, engine=engine_name, **kwargs)
    return hist, model, optimizer


def _state(optimizer):
    return [{k: np.array(v) for k, v in s.items()} for s in optimizer.state]


# The reported loss and penalty of a step are float64 sums of non-negative
# terms (per-element losses, w**2, |w|) that LLVM vectorizes with reassociated
# adds; where it cannot prove that the gradient it writes in the same loop
# does not overlap the inputs, a run-time check on the two addresses picks the
# vector loop or a scalar one, and the two sum in different orders.  So these
# values depend on where the arrays lie in memory (the layer path's are fresh
# allocations, the engine's slices of its arenas), not on the executor; a
# regrouped sum of n non-negative terms is within (n - 1) ulp, 48 terms here.
# They feed no gradient: everything the training computes is compared bit
# for bit.
SUM_RTOL = 48 * 2.0 ** -52


def _assert_same(make_model, dtype=np.float64, **kwargs):
    """Both engines from the same start: every array at the end equal bit for bit, and
    every step's loss equal to the rounding of its sum (see SUM_RTOL).

    The compiled engine runs the layer path's own kernels (the same
    products, activations, losses, penalties and update rules), so it
    differs only in scheduling.
    """
    # The compiled engine runs the BLAS on one thread; the layer path, left
    # alone, on the BLAS's thread team, which splits a large product's sums
    # differently (64 x 256 x 64: 1 ulp apart).  Same kernels, same threads:
    with engine.one_blas_thread():
        ref_hist, ref, ref_opt = _train(make_model, "layers", dtype=dtype, **kwargs)
    hist, got, got_opt = _train(make_model, "compiled", dtype=dtype, **kwargs)
    assert hist["engine"] == "compiled" and ref_hist["engine"].startswith("layers")
    assert len(hist["step_loss"]) == len(ref_hist["step_loss"]) >= 10
    np.testing.assert_allclose(hist["step_loss"], ref_hist["step_loss"], rtol=SUM_RTOL, atol=0)
    for key in ("train_loss", "penalty"):
        np.testing.assert_allclose(hist[key], ref_hist[key], rtol=SUM_RTOL, atol=0, err_msg=key)
    for key in ("lr", "train_accuracy"):
        if key in ref_hist:
            assert hist[key] == ref_hist[key], key
    want = ref.state_dict()
    for name, value in got.state_dict().items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)
    for s_got, s_ref in zip(_state(got_opt), _state(ref_opt)):
        assert s_got.keys() == s_ref.keys()
        for k in s_ref:
            np.testing.assert_array_equal(s_got[k], s_ref[k], err_msg=k)
    for p, q in zip(got.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    return hist, ref_hist


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "hinge", "mse", "mae",
                                  "binary_cross_entropy"])
def test_losses_and_activations(loss, act):
    _assert_same(lambda: _mlp(act=act), loss=loss)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_optimizers(opt):
    _assert_same(lambda: _mlp(bn=True), opt=opt)


@pytest.mark.parametrize("reg", [{"l2": 1e-2}, {"l1": 1e-2}, {"max_norm": 0.5},
                                 {"l2": 1e-3, "l1": 1e-3, "max_norm": 1.0}])
@pytest.mark.parametrize("opt", ["sgd_momentum", "adamw"])
def test_regularizers(reg, opt):
    hist, _ = _assert_same(lambda: _mlp(), opt=opt, **reg)
    assert (hist["penalty"][0] > 0) == ("l1" in reg or "l2" in reg)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_masks_are_the_layer_paths(p):
    _assert_same(lambda: _mlp(bn=True, dropout=p))


@pytest.mark.parametrize("schedule", [optim.step_decay(0.05, step_size=3, gamma=0.5),
                                      optim.warmup_cosine(0.02, 4, 12)])
def test_schedules_and_no_shuffle(schedule):
    hist, _ = _assert_same(lambda: _mlp(bn=True), opt="sgd_momentum", schedule=schedule,
                           shuffle=False)
    assert hist["lr"][-1] == schedule(13)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "binary_cross_entropy"])
def test_float32_bit_for_bit(loss):
    _assert_same(lambda: _mlp(np.float32, bn=True, dropout=0.2), dtype=np.float32, loss=loss,
                 l2=1e-3)


def test_no_bias_and_standalone_layers():
    def make():
        return nn.Sequential(nn.Dropout(0.1), nn.Linear(D, 7, bias=False, rng=3),
                             nn.BatchNorm1d(7), nn.LeakyReLU(0.2), nn.ReLU(),
                             nn.Linear(7, C, rng=4, activation="leaky_relu"))
    _assert_same(make)


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge", "mse", "mae",
                                  "binary_cross_entropy"])
def test_sample_weights(loss):
    """The weighted batch loss: the same per-sample kernels and weighted_mean_ on both."""
    w = np.random.default_rng(3).uniform(0.0, 2.0, N)
    w[:5] = 0.0
    _assert_same(lambda: _mlp(bn=True, dropout=0.2), loss=loss, sample_weight=w, l2=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_odd_architectures(dtype):
    """Dropout first, an activation after batch norm (what MLPClassifier(batch_norm=True)
    builds), batch norm last, and no bias."""
    def make():
        return nn.Sequential(nn.Dropout(0.2), nn.Linear(D, 8, rng=0, dtype=dtype, bias=False),
                             nn.BatchNorm1d(8, dtype=dtype), nn.Sigmoid(),
                             nn.Linear(8, C, rng=1, dtype=dtype, activation="tanh"),
                             nn.BatchNorm1d(C, dtype=dtype))
    _assert_same(make, dtype=dtype, loss="mse", opt="adamw")


def test_a_wider_net_in_larger_batches():
    X, y = _data("cross_entropy", n=300, d=64, c=10)

    def make():
        return nn.Sequential(nn.Linear(64, 256, rng=0, dtype=np.float64), nn.ReLU(),
                             nn.Linear(256, 10, rng=1, dtype=np.float64))
    _assert_same(make, data=(X, y), batch_size=64, epochs=2)


@st.composite
def _architectures(draw):
    """A random flat Sequential (as a factory) over D inputs and C outputs."""
    spec, width = [], D
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["linear", "act", "bn", "dropout"]))
        if kind == "linear":
            out = draw(st.integers(1, 12))
            spec.append(("linear", width, out, draw(st.sampled_from(
                [None, "relu", "leaky_relu", "tanh", "sigmoid"])), draw(st.booleans())))
            width = out
        elif kind == "act":
            spec.append(("act", draw(st.sampled_from(["relu", "leaky_relu", "tanh", "sigmoid"]))))
        elif kind == "bn":
            # A batch norm right after an affine map (another batch norm, or a
            # Linear without activation, dropout aside) makes that map's shift
            # gradient exactly 0; Adam then walks on rounding noise (1e-16 /
            # eps per step), which no tolerance on the parameters can follow.
            last = [item for item in spec if item[0] != "dropout"][-1:]
            if last and (last[0][0] == "bn" or (last[0][0] == "linear" and last[0][3] is None)):
                spec.append(("act", "tanh"))
            spec.append(("bn", width))
        else:
            spec.append(("dropout", draw(st.sampled_from([0.0, 0.25, 0.5]))))
    spec.append(("linear", width, C, None, True))
    return spec


def _build(spec):
    layers = []
    for i, item in enumerate(spec):
        if item[0] == "linear":
            layers.append(nn.Linear(item[1], item[2], activation=item[3], bias=item[4], rng=i))
        elif item[0] == "act":
            layers.append({"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh,
                           "sigmoid": nn.Sigmoid}[item[1]]())
        elif item[0] == "bn":
            layers.append(nn.BatchNorm1d(item[1]))
        else:
            layers.append(nn.Dropout(item[1]))
    for layer in layers:
        for p in getattr(layer, "_params", ()):
            getattr(layer, p).data = getattr(layer, p).data.astype(np.float64)
        for b in getattr(layer, "_buffers", ()):
            setattr(layer, b, getattr(layer, b).astype(np.float64))
    return nn.Sequential(*layers)


@settings(max_examples=15)
@given(spec=_architectures(), loss=st.sampled_from(["cross_entropy", "hinge", "mse", "mae",
                                                   "binary_cross_entropy"]),
       opt=st.sampled_from(sorted(OPTIMIZERS)))
# Found by hypothesis: the batch norm's running mean was 2.3e-10 apart (relative)
# while the layer path's products went to numpy's BLAS and the engine's to scipy's.
@example(spec=[("linear", D, 1, "sigmoid", False), ("linear", 1, 1, "relu", True), ("bn", 1),
               ("linear", 1, C, None, True)], loss="cross_entropy", opt="adam")
def test_random_architectures(spec, loss, opt):
    _assert_same(lambda: _build(spec), loss=loss, opt=opt)


@pytest.mark.parametrize("engine_name", ["compiled", "layers"])
def test_a_sigmoid_after_batch_norm_keeps_its_tail_in_float32(engine_name):
    """Linear -> BatchNorm1d -> Sigmoid, outputs near sigmoid(-18) = 1.5e-8.

    The engine once had a Sigmoid of its own, 0.5 (1 + tanh(x / 2)), whose
    1 + tanh cancels in float32 (to 0 or 6e-8): the mse losses were up to
    295% off a float64 reference, while the layers' sigmoid (exp(-|x|))
    keeps 1e-7 relative.  Both engines now run the layers' one definition.
    """
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2))
    y = np.zeros((64, 1))

    def run(dtype, name):
        model = nn.Sequential(nn.Linear(2, 1, bias=False, rng=0, dtype=dtype),
                              nn.BatchNorm1d(1, dtype=dtype), nn.Sigmoid())
        model[0].weight.data[:] = [[0.8, -0.6]]     # the same start in both dtypes
        model[1].bias.data[:] = -18.0               # the normalized outputs: -18 +- 2
        hist = fit(model, X.astype(dtype), y.astype(dtype), loss="mse", epochs=2,
                   batch_size=16, optimizer=optim.SGD(model.parameters(), lr=0.1), rng=0,
                   progress=False, engine=name)
        assert hist["engine"].startswith(name)
        return np.array(hist["step_loss"])
    want = run(np.float64, "layers")
    assert 1e-17 < want.min() and want.max() < 1e-14
    np.testing.assert_allclose(run(np.float32, engine_name), want, rtol=1e-5)


def test_divergence_is_reported_as_the_layer_path_does():
    X, y = _data("cross_entropy")
    X[37] = np.nan        # a NaN row: the step whose batch holds it diverges
    errors, models = {}, {}
    for name in ("layers", "compiled"):
        model = _mlp(bn=True)
        with pytest.raises(DivergenceError) as info:
            fit(model, X, y, optimizer=optim.Adam(model.parameters()), batch_size=16, epochs=3,
                rng=0, progress=False, engine=name)
        errors[name], models[name] = info.value, model
    a, b = errors["layers"], errors["compiled"]
    assert (a.epoch, a.step, a.global_step) == (b.epoch, b.step, b.global_step)
    assert str(a) == str(b)
    np.testing.assert_allclose(b.history["step_loss"], a.history["step_loss"], rtol=1e-10)
    for k, v in models["compiled"].state_dict().items():   # running stats restored, finite
        assert np.isfinite(v).all()
        np.testing.assert_allclose(v, models["layers"].state_dict()[k], rtol=1e-10, atol=1e-12)


def test_why_not_names_the_obstacle_and_auto_falls_back():
    X, y = _data("cross_entropy")
    cases = [
        (nn.Sequential(nn.Sequential(nn.Linear(D, C, rng=0))), "layer 0 is a Sequential"),
        (nn.Sequential(nn.Linear(D, 4, rng=0), nn.Linear(4, C, rng=1, dtype=np.float64)),
         "mix float32 and float64"),
        (nn.Linear(D, C, rng=0), "not a fastnn.nn.Sequential"),
    ]
    for model, reason in cases:
        assert reason in engine.why_not(model)
        if "mix" in reason:
            continue   # fit refuses it before choosing an engine (its first forward)
        with pytest.raises(ValueError, match="engine='compiled' cannot train"):
            fit(model, X, y, epochs=1, progress=False, engine="compiled")
    model = _mlp()

    class MySGD(optim.SGD):
        pass
    opt = MySGD(model.parameters(), lr=0.1)
    assert "MySGD" in engine.why_not(model, opt)
    hist = fit(model, X, y, optimizer=opt, epochs=1, progress=False)
    assert hist["engine"] == "layers (the optimizer is a MySGD, not SGD, Adam or AdamW)"
    partial = optim.Adam(model.parameters()[:2])
    assert "exactly model.parameters()" in engine.why_not(model, partial)
    with pytest.raises(ValueError, match="engine"):
        fit(model, X, y, epochs=1, progress=False, engine="fast")


def test_state_save_and_load_work_after_a_compiled_fit(tmp_path):
    """The model's arrays are its own after a fit: nothing aliases the plan or each other."""
    hist, model, opt = _train(lambda: _mlp(bn=True), "compiled")
    held = [p.data for p in model.parameters()] + [p.grad for p in model.parameters()]
    held += [s[k] for s in opt.state for k in ("exp_avg", "exp_avg_sq")]
    for i, a in enumerate(held):
        assert not any(np.shares_memory(a, b) for b in held[i + 1:])
    for s in opt.state:
        assert s["step"] == len(hist["step_loss"])
    before = model.state_dict()
    model.save(tmp_path / "m.npz")
    fresh = _mlp(bn=True).load(tmp_path / "m.npz")
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    weight = model[0].weight.data
    model.load_state_dict({k: np.zeros_like(v) for k, v in before.items()})
    assert model[0].weight.data is weight and not weight.any()


@pytest.mark.parametrize("first,second", [("compiled", "layers"), ("layers", "compiled")])
def test_switching_engines_between_fits_continues_the_same_run(first, second):
    """Optimizer state, step counts and buffers are handed over both ways."""
    X, y = _data("cross_entropy")
    runs = {}
    for order in ((first, second), ("layers", "layers")):
        model = _mlp(bn=True, dropout=0.2)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if first == "layers" \
            else optim.Adam(model.parameters(), lr=1e-2)
        h1 = fit(model, X, y, optimizer=opt, batch_size=16, epochs=1, rng=0, progress=False,
                 engine=order[0])
        h2 = fit(model, X, y, optimizer=opt, batch_size=16, epochs=1, rng=1, progress=False,
                 engine=order[1])
        runs[order] = (h1["step_loss"] + h2["step_loss"], model.state_dict())
    got, want = runs[(first, second)], runs[("layers", "layers")]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    for k in want[1]:
        np.testing.assert_allclose(got[1][k], want[1][k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_fit_many_equals_separate_fits():
    """Per-model seeds, learning rates, penalties, max-norm, dropout p and schedules."""
    X, y = _data("cross_entropy", dtype=np.float32)
    kinds = [{"p": 0.0, "lr": 0.05}, {"p": 0.3, "lr": 0.01}, {"p": 0.5, "lr": 0.1}]

    def make():
        models = [_mlp(np.float32, bn=True, dropout=k["p"]) for k in kinds]
        opts = [optim.SGD(m.parameters(), lr=k["lr"], momentum=0.9) for m, k in zip(models, kinds)]
        return models, opts
    per = {"rng": [0, 1, 2], "l2": [0.0, 1e-3, 0.0], "l1": [0.0, 0.0, 1e-3],
           "max_norm": [None, 1.0, 2.0],
           "schedule": [None, optim.step_decay(0.01, 5), optim.warmup_cosine(0.1, 3, 14)]}
    models, opts = make()
    hists = fit_many(models, X, y, opts, n_jobs=2, epochs=2, batch_size=16, **per)
    ref_models, ref_opts = make()
    for i, (m, o) in enumerate(zip(ref_models, ref_opts)):
        ref = fit(m, X, y, optimizer=o, epochs=2, batch_size=16, progress=False,
                  **{k: v[i] for k, v in per.items()})
        assert hists[i] == ref
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(models[i].state_dict()[k], v)


def test_fit_many_checks_its_arguments_and_runs_uncompilable_models():
    X, y = _data("cross_entropy")
    models = [_mlp(), nn.Sequential(nn.Sequential(_mlp()))]
    hists = fit_many(models, X, y, epochs=1, batch_size=16, rng=[0, 1])
    assert hists[0]["engine"] == "compiled" and hists[1]["engine"].startswith("layers")
    with pytest.raises(ValueError, match="rng has 1 values for 2 models"):
        fit_many(models, X, y, rng=[0])
    with pytest.raises(TypeError, match=r"epochs is a list: .* per_model=\{'epochs': \[...\]\}"):
        fit_many(models, X, y, epochs=[1, 2])
    with pytest.raises(TypeError, match="engine"):
        fit_many(models, X, y, engine="layers")
    with pytest.raises(ValueError, match="2 optimizers for 1 models"):
        fit_many(models[:1], X, y, [optim.SGD(models[0].parameters(), lr=0.1)] * 2)
    with pytest.raises(IndexError):
        fit_many(models, X, y + 5, epochs=1)


def test_a_batch_of_one_through_batch_norm_is_refused_as_the_layer_path_does():
    X, y = _data("cross_entropy", n=1)
    with pytest.raises(ValueError) as want:
        fit(_mlp(bn=True), X, y, epochs=1, progress=False, engine="layers")
    with pytest.raises(ValueError) as got:
        fit(_mlp(bn=True), X, y, epochs=1, progress=False)
    assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match="batch of one sample"):
        fit(_mlp(bn=True), X, y, epochs=1, progress=False, engine="compiled")


def test_without_scipy_or_threadpoolctl_fit_takes_the_layer_path_and_says_why(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError("No module named 'threadpoolctl'")
        return real_import(name, *args, **kwargs)
    engine._missing_dependency.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_threadpoolctl)
    try:
        reason = engine.why_not(nn.Sequential(nn.Linear(3, 2, rng=0)))
        assert "needs scipy and threadpoolctl" in reason and "fastnn[engine]" in reason
        X = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
        hist = fit(nn.Sequential(nn.Linear(3, 2, rng=0)), X, np.arange(16) % 2, epochs=1,
                   progress=False)
        assert hist["engine"].startswith("layers (the compiled engine needs scipy")
        many = fit_many([nn.Sequential(nn.Linear(3, 2, rng=s)) for s in range(2)], X,
                        np.arange(16) % 2, epochs=1)
        assert all(h["engine"].startswith("layers (") for h in many)
    finally:
        monkeypatch.undo()
        engine._missing_dependency.cache_clear()
    assert engine.why_not(nn.Sequential(nn.Linear(3, 2, rng=0))) is None
