"""The lesson's experiments: every figure is written, every claim holds.

The experiments run once per session in --quick mode (module-scoped
fixture); each test then checks one claim of the lesson on the numbers the
experiment returned.  Marked slow: they train networks end to end, so the
bounds-checked and single-thread CI variants skip them; the fast tests below
cover the command line and argument handling.
"""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from fastnn import lesson

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesson")
    return lesson.run(out, quick=True)


def _assert_png(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, path
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width > 300 and height > 200, (path, width, height)


# -- fast: the command line ---------------------------------------------------

def test_only_is_validated():
    for bad in ("0", "9", "x", "1,,12", ""):
        with pytest.raises(ValueError):
            lesson.run("unused", quick=True, only=bad)


def test_main_rejects_unknown_experiment(capsys):
    with pytest.raises(SystemExit) as exc:
        lesson.main(["--only", "42"])
    assert exc.value.code == 2
    assert "42" in capsys.readouterr().err


def test_main_runs_one_experiment(tmp_path, capsys):
    # Experiment 7 uses only the loss kernels: fast enough for every CI variant.
    assert lesson.main(["--out", str(tmp_path), "--quick", "--only", "7"]) == 0
    out = capsys.readouterr().out
    assert "7. Loss functions" in out and "seed 0" in out
    _assert_png(tmp_path / "exp7_losses.png")


def test_losses_match_their_definitions(tmp_path):
    r = lesson.run(tmp_path, quick=True, only=[7])[7]
    s = r["score"]
    # Scores (s, 0, 0), class 0 correct: CE = log(1 + 2 e^-s), hinge = 2 max(0, 1 - s).
    np.testing.assert_allclose(r["cross_entropy"], np.log1p(2 * np.exp(-s)), rtol=1e-8)
    np.testing.assert_allclose(r["hinge"], 2 * np.maximum(0, 1 - s), atol=1e-12)
    # CE keeps decreasing past the margin; hinge is exactly 0 there.
    assert np.all(np.diff(r["cross_entropy"]) < 0)
    assert np.all(r["hinge"][s > 1] == 0)
    # MAE is far less affected by the outliers than MSE.
    assert r["mae"]["shift"] < 0.2 * r["mse"]["shift"]
    assert r["mae"]["clean_val_mae"] < r["mse"]["clean_val_mae"]


# -- slow: all eight experiments, and the lesson's claims -----------------------

@pytest.mark.slow
def test_every_figure_is_a_png(results):
    assert sorted(results) == list(range(1, 9))
    for n, r in results.items():
        assert r["figures"], n
        for path in r["figures"]:
            _assert_png(path)


@pytest.mark.slow
def test_poor_setup_stays_at_chance_good_setup_learns(results):
    r = results[1]
    majority = r["majority_fraction"]
    assert abs(r["poor"]["val_accuracy"] - majority) < 0.02
    assert r["good"]["val_accuracy"] > 0.9
    assert r["good"]["train_loss"][-1] < 0.5 * r["poor"]["train_loss"][-1]


@pytest.mark.slow
def test_normalized_data_converges_in_far_fewer_steps(results):
    r = results[2]
    assert r["normalized"]["steps"] is not None and r["normalized"]["steps"] <= 20
    assert r["raw"]["steps"] is None  # not within max_steps
    assert r["raw"]["remaining_excess"] > 0.5
    assert r["raw"]["kappa"] > 1e6 * r["normalized"]["kappa"]
    assert r["raw_with_normalized_lr_diverges"]


@pytest.mark.slow
def test_initialization_claims(results):
    r = results[3]
    for depth in r["depths"]:
        he = r[("he", depth)]["variance"]
        small = r[("small", depth)]["variance"]
        large = r[("large", depth)]["variance"]
        assert np.all((he > 0.2) & (he < 5.0)), he           # He stays in a band
        assert he[-1] / he[0] == pytest.approx(1.0, rel=0.9)
        assert small[-1] < 1e-6 * he[-1]                       # small collapses
        assert large[-1] > 1e6 * he[-1]                        # large explodes
        assert np.all(r[("zeros", depth)]["variance"] == 0)
        assert all(v == "healthy" for v in r[("he", depth)]["verdicts"])
        assert r[("small", depth)]["verdicts"][-1] == "collapsed"
        assert r[("large", depth)]["verdicts"][-1] == "exploded"
        assert r[("zeros", depth)]["verdicts"][-1] == "collapsed"
    # Zero init stays symmetric after training: every hidden unit identical.
    for act in ("relu", "sigmoid"):
        assert r["symmetry"][act]["max_unit_difference"] <= 1e-9
        assert r["symmetry"][act]["max_activation_difference"] <= 1e-9
    assert r["symmetry"]["relu"]["hidden_weight_norm"] == 0.0      # dead at zero
    assert r["symmetry"]["sigmoid"]["hidden_weight_norm"] > 0.1    # moved, as one unit


@pytest.mark.slow
def test_batch_norm_keeps_activations_centered(results):
    r = results[4]
    bn, plain = r["batchnorm"], r["plain"]
    assert bn["max_abs_mean"] < 0.3
    assert 0.5 < bn["std_range"][0] and bn["std_range"][1] < 2.5
    assert plain["max_abs_mean"] > bn["max_abs_mean"]
    assert np.ptp(plain["std"]) > np.ptp(bn["std"][1:])


@pytest.mark.slow
def test_l2_shrinks_weights_and_trades_train_for_validation_loss(results):
    r = results[5]
    norms, train, val = r["weight_sq_norm"], r["train_loss"], r["val_loss"]
    assert np.all(np.diff(norms) < 0)                  # larger lambda, smaller weights
    assert np.all(np.diff(train) > -0.01)              # train loss rises...
    assert train[-1] > train[0] + 0.2                  # ...from overfit to underfit
    best = int(np.argmin(val))
    assert 0 < best < len(val) - 1                      # the sweet spot is in between
    assert val[0] > val[best] + 0.1 and val[-1] > val[best] + 0.1


@pytest.mark.slow
def test_dropout_shrinks_the_generalization_gap(results):
    r = results[6]
    assert r["dropout"]["loss_gap"] < r["plain"]["loss_gap"]


@pytest.mark.slow
def test_learning_rate_too_high_diverges_too_low_stalls(results):
    r = results[8]
    good, high, low = r["good"], r["too high"], r["too low"]
    assert high["diverged"] is not None or high["final_train_loss"] > 2 * good["final_train_loss"]
    assert low["final_train_loss"] > 5 * good["final_train_loss"]
    assert good["final_val_accuracy"] > 0.9
    assert r["warmup + cosine"]["final_val_accuracy"] > 0.9
