"""The compiled training engine against the layer-by-layer path (the reference).

Both paths of ``fit`` must take the same steps: same shuffles, bit-identical
dropout masks, same update rules.  In float64 per-step losses and final
parameters, buffers and optimizer state agree to ~1e-10 relative over 10+
steps; in float32 to float32 tolerances.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastnn import engine, nn, optim
from fastnn.train import DivergenceError, fit

N, D, C = 100, 6, 3   # 100 rows at batch 16: 6 full batches + one of 4, 7 steps per epoch
EPOCHS = 2            # 14 steps


def _data(loss, dtype=np.float64, n=N, d=D, c=C, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss in ("cross_entropy", "hinge"):
        y = (X[:, :c] @ rng.standard_normal(c) > 0).astype(np.int64) + (X[:, 0] > 1)
        return X, y
    return X, (X[:, :c] * 0.5 + rng.standard_normal((n, c)) * 0.1).astype(dtype)


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


def _assert_same(make_model, dtype=np.float64, **kwargs):
    """Both engines from the same start; every step's loss and every array at the end."""
    ref_hist, ref, ref_opt = _train(make_model, "layers", dtype=dtype, **kwargs)
    hist, got, got_opt = _train(make_model, "compiled", dtype=dtype, **kwargs)
    assert hist["engine"] == "compiled" and ref_hist["engine"].startswith("layers")
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
    assert len(hist["step_loss"]) == len(ref_hist["step_loss"]) >= 10
    np.testing.assert_allclose(hist["step_loss"], ref_hist["step_loss"], rtol=rtol, atol=atol)
    for key in ("train_loss", "penalty", "lr", "train_accuracy"):
        if key in ref_hist:
            np.testing.assert_allclose(hist[key], ref_hist[key], rtol=rtol, atol=atol)
    want = ref.state_dict()
    for name, value in got.state_dict().items():
        np.testing.assert_allclose(value, want[name], rtol=rtol, atol=atol, err_msg=name)
    for s_got, s_ref in zip(_state(got_opt), _state(ref_opt)):
        assert s_got.keys() == s_ref.keys()
        for k in s_ref:
            np.testing.assert_allclose(s_got[k], s_ref[k], rtol=rtol, atol=atol, err_msg=k)
    for p, q in zip(got.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=max(rtol, 1e-9), atol=atol)
    return hist, ref_hist


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "hinge", "mse", "mae"])
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


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_float32_within_float32_tolerances(loss):
    _assert_same(lambda: _mlp(np.float32, bn=True, dropout=0.2), dtype=np.float32, loss=loss,
                 l2=1e-3)


def test_no_bias_and_standalone_layers():
    def make():
        return nn.Sequential(nn.Dropout(0.1), nn.Linear(D, 7, bias=False, rng=3),
                             nn.BatchNorm1d(7), nn.LeakyReLU(0.2), nn.ReLU(),
                             nn.Linear(7, C, rng=4, activation="leaky_relu"))
    _assert_same(make)


def test_batches_large_enough_for_the_blas():
    """Products above BLAS_FLOPS go through np.dot (the BLAS): same steps."""
    X, y = _data("cross_entropy", n=300, d=64, c=10)

    def make():
        return nn.Sequential(nn.Linear(64, 256, rng=0, dtype=np.float64), nn.ReLU(),
                             nn.Linear(256, 10, rng=1, dtype=np.float64))
    from fastnn._cpu import engine as k
    assert 64 * 64 * 256 >= k.BLAS_FLOPS > 16 * 8 * 8
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
@given(spec=_architectures(), loss=st.sampled_from(["cross_entropy", "hinge", "mse", "mae"]),
       opt=st.sampled_from(sorted(OPTIMIZERS)))
def test_random_architectures(spec, loss, opt):
    _assert_same(lambda: _build(spec), loss=loss, opt=opt)
