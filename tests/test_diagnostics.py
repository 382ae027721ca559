"""Activation statistics and health verdicts: numbers vs numpy, the lesson's init zoo."""
import numpy as np
import pytest

from fastnn import diagnostics, nn
from fastnn.diagnostics import activation_stats, health


def _data(n=512, d=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _deep(init, depth=5, width=64, std=0.01, act=nn.ReLU, seed=0):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(width, width, init=init, std=std, rng=seed + i), act()]
    return nn.Sequential(*layers)


def test_activation_stats_match_numpy():
    model = nn.Sequential(nn.Linear(64, 32, rng=0), nn.ReLU(), nn.Linear(32, 8, rng=1),
                          nn.Tanh(), nn.Linear(8, 4, activation="sigmoid", rng=2))
    X = _data()
    stats = activation_stats(model, X, bins=10)
    assert [s["name"] for s in stats] == ["Linear", "ReLU", "Linear", "Tanh", "Linear"]
    assert [s["index"] for s in stats] == list(range(5))
    h = X
    for layer, s in zip(model, stats):
        h = layer.forward(h)
        np.testing.assert_allclose(s["mean"], h.astype(np.float64).mean(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(s["std"], h.astype(np.float64).std(), rtol=1e-6)
        assert s["zero_fraction"] == np.mean(h == 0)
        counts, edges = s["histogram"]
        assert counts.sum() == h.size and len(edges) == 11
        assert s["finite"]
    assert 0.3 < stats[1]["zero_fraction"] < 0.7  # half the ReLUs are off
    assert stats[0]["saturated_fraction"] == stats[1]["saturated_fraction"] == 0.0
    t = model[3].forward(model[2].forward(model[1].forward(model[0].forward(X))))
    assert stats[3]["saturated_fraction"] == np.mean(np.abs(t) > 0.99)
    sig = model[4].forward(t)
    assert stats[4]["saturated_fraction"] == np.mean((sig < 0.01) | (sig > 0.99))


def test_saturation_detected_for_large_init():
    X = _data()
    tanh = _deep("normal", depth=3, std=1.0, act=nn.Tanh)
    stats = activation_stats(tanh, X)
    assert stats[-1]["saturated_fraction"] > 0.5
    report = health(tanh, X)
    assert report.verdicts[1::2] == ["exploded"] * 3  # the saturated tanh layers


def test_health_of_the_init_zoo():
    """The lesson's figure: He stays healthy, small collapses, large explodes, zeros are dead."""
    X = _data()
    he = health(_deep("he"), X)
    assert he.healthy and he.verdicts == ["healthy"] * 10
    assert he.summary.startswith("healthy: all 10 layers")
    small = health(_deep("normal", std=0.01), X)
    assert small.verdicts[-1] == "collapsed" and not small.healthy
    large = health(_deep("normal", std=1.0), X)
    assert large.verdicts[-1] == "exploded"
    zeros = health(_deep("zeros"), X)
    assert zeros.verdicts == ["collapsed"] * 10
    for report in (small, large, zeros):
        assert "\n" not in report.summary and str(report) == report.summary
    assert "collapsed: " in small.summary and "exploded: " in large.summary
    # gradients vanish through small weights: the first layer gets a tiny gradient
    assert small.layers[0]["grad_norm"] < 1e-3 * he.layers[0]["grad_norm"]
    assert np.isnan(he.layers[1]["grad_norm"])  # a ReLU has no parameters
    assert he.layers[0]["input_grad_norm"] > 0
    assert "verdict" in he.table() and len(he.table().splitlines()) == 12


def test_verdict_thresholds():
    X = _data(d=4)
    layer = nn.Linear(4, 4, init="zeros", rng=0)
    for scale, verdict in ((diagnostics.COLLAPSED_RATIO * 0.5, "collapsed"),
                           (1.0, "healthy"),
                           (diagnostics.EXPLODED_RATIO * 2, "exploded")):
        layer.weight.data[...] = np.eye(4) * scale
        assert health(nn.Sequential(layer), X).verdicts == [verdict], scale
    layer.weight.data[0, 0] = np.inf
    assert health(nn.Sequential(layer), X).verdicts == ["exploded"]  # non-finite output


def test_health_gradients_match_a_manual_backward():
    import fastnn.functional as F

    model = nn.Sequential(nn.Linear(64, 16, rng=0), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 10, rng=1))
    X = _data(n=64)
    y = np.arange(64) % 10
    report = health(model, X, y)
    model.eval()
    h = X
    for layer in model:
        h = layer.forward(h)
    _, dy = F.cross_entropy_with_grad(h, y)
    model.zero_grad()
    for layer in reversed(list(model)):
        dy = layer.backward(dy)
    for i in (0, 1, 3):
        norm = np.sqrt(sum(np.sum(p.grad.astype(np.float64) ** 2) for p in model[i].parameters()))
        np.testing.assert_allclose(report.layers[i]["grad_norm"], norm, rtol=1e-5)
    np.testing.assert_allclose(report.layers[0]["input_grad_norm"], np.linalg.norm(dy), rtol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_diagnostics_leave_the_model_unchanged(training):
    model = nn.Sequential(nn.Linear(64, 16, rng=0), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Dropout(0.5, rng=3), nn.Linear(16, 10, rng=1))
    model.train()
    X = _data(n=32)
    model(X * 2 + 1)
    model.backward(np.ones((32, 10), np.float32))
    state = model.state_dict()
    grads = [p.grad.copy() for p in model.parameters()]
    rng_state = model[3].rng.bit_generator.state
    activation_stats(model, X, training=training)
    health(model, X, np.arange(32) % 10, training=training)
    health(model, X, training=training)
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert model[3].rng.bit_generator.state == rng_state


def test_training_mode_uses_batch_statistics():
    model = nn.Sequential(nn.Linear(64, 16, rng=0), nn.BatchNorm1d(16))
    X = _data() * 5 + 3
    train_stats = activation_stats(model, X, training=True)
    eval_stats = activation_stats(model, X)
    assert abs(train_stats[1]["mean"]) < 1e-5 and abs(train_stats[1]["std"] - 1) < 1e-3
    assert abs(eval_stats[1]["std"] - eval_stats[0]["std"]) < 1e-3 * eval_stats[0]["std"]


def test_bad_arguments():
    model = nn.Sequential(nn.Linear(4, 2, rng=0))
    with pytest.raises(ValueError, match="bins"):
        activation_stats(model, _data(d=4), bins=0)
    with pytest.raises(ValueError, match="no samples"):
        health(model, _data(d=4)[:0])
    with pytest.raises(ValueError, match="loss"):
        health(model, _data(d=4), loss="nll")
    with pytest.raises(IndexError):
        health(model, _data(n=4, d=4), np.array([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="Module"):
        health(lambda x: x, _data(d=4))
