"""train.fit_many: distinct models only, shared and per-model fit arguments, checks before
any model trains."""
import copy

import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.callbacks import Callback, EarlyStopping
from fastnn.train import fit, fit_many

N, D, C = 60, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)


def _model(seed=0, compiled=True):
    net = nn.Sequential(nn.Linear(D, 8, activation="relu", rng=seed, dtype=np.float64),
                        nn.Linear(8, C, rng=seed + 1, dtype=np.float64))
    return net if compiled else nn.Sequential(net)   # nested: the layer path


def _models(k=3):
    """k models, the last one for the layer path; and SGD optimizers over them."""
    models = [_model(2 * i, compiled=i < k - 1) for i in range(k)]
    return models, [optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]


def _states(models):
    return [{k: v.copy() for k, v in m.state_dict().items()} for m in models]


def _assert_unchanged(models, states):
    for m, state in zip(models, states):
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_a_model_given_twice_is_refused_before_training():
    X, y = _data()
    m = _model()
    before = _states([m])
    with pytest.raises(ValueError, match=r"models\[0\] and models\[1\] are the same model"):
        fit_many([m, m], X, y, epochs=1)
    with pytest.raises(ValueError, match=r"models\[1\] is a layer of models\[0\]"):
        fit_many([m, m[0]], X, y, epochs=1)
    _assert_unchanged([m], before)


def test_models_sharing_a_layer_a_parameter_or_memory_are_refused_by_index():
    X, y = _data()
    models = [_model(0), _model(2), _model(4)]
    before = _states(models)
    shared_layer = [models[0], nn.Sequential(models[0][0], nn.Linear(8, C, rng=9,
                                                                     dtype=np.float64))]
    with pytest.raises(ValueError, match=r"models\[0\] and models\[1\] share a layer "
                                         r"\(a Linear\)"):
        fit_many(shared_layer, X, y, epochs=1)
    models[2][1].bias = models[0][1].bias
    with pytest.raises(ValueError, match=r"models\[0\] and models\[2\] share a parameter "
                                         r"\(shape \(3,\)\)"):
        fit_many(models, X, y, epochs=1)
    models[2][1].bias = nn.Parameter(models[0][1].bias.data, decay=False)   # one array
    with pytest.raises(ValueError, match=r"models\[0\] and models\[2\] hold parameters or "
                                         "buffers in the same memory"):
        fit_many(models, X, y, epochs=1)
    _assert_unchanged(models, before)


def test_per_model_sample_weights_are_bagging_each_model_as_its_own_fit():
    X, y = _data()
    rng = np.random.default_rng(1)
    weights = [np.bincount(rng.integers(0, N, N), minlength=N) for _ in range(3)]
    models, opts = _models()
    hists = fit_many(models, X, y, opts, epochs=3, batch_size=16, rng=0, n_jobs=2,
                     per_model={"sample_weight": weights})
    assert [h["engine"] == "compiled" for h in hists] == [True, True, False]
    refs, ref_opts = _models()
    for i in range(3):
        ref = fit(refs[i], X, y, optimizer=ref_opts[i], epochs=3, batch_size=16, rng=0,
                  progress=False, sample_weight=weights[i])
        assert hists[i] == ref
        for k, v in refs[i].state_dict().items():
            np.testing.assert_array_equal(models[i].state_dict()[k], v, err_msg=k)
    # the weights matter: bagged models differ from one trained on unit weights
    unit = _model(0)
    fit(unit, X, y, optimizer=optim.SGD(unit.parameters(), lr=0.1, momentum=0.9), epochs=3,
        batch_size=16, rng=0, progress=False)
    assert not np.array_equal(unit[0].weight.data, models[0][0].weight.data)


def test_a_shared_weight_list_and_shared_callback_functions_are_taken_as_fit_takes_them():
    X, y = _data()
    w = np.random.default_rng(2).random(N).tolist()     # a plain list, as fit accepts it
    seen = []

    def record(history):
        seen.append(len(history["epoch"]))

    models, opts = _models()
    hists = fit_many(models, X, y, opts, epochs=3, batch_size=16, rng=0, sample_weight=w,
                     callbacks=[record])
    assert sorted(seen) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    refs, ref_opts = _models()
    for i in range(3):
        ref = fit(refs[i], X, y, optimizer=ref_opts[i], epochs=3, batch_size=16, rng=0,
                  progress=False, sample_weight=w)
        assert hists[i] == ref
        for k, v in refs[i].state_dict().items():
            np.testing.assert_array_equal(models[i].state_dict()[k], v, err_msg=k)


def test_one_callback_object_for_several_models_is_refused_and_per_model_ones_work():
    X, y = _data()
    models, opts = _models()
    before = _states(models)
    stop = EarlyStopping(monitor="train_loss", patience=1)
    with pytest.raises(ValueError, match=r"one EarlyStopping object is in the callbacks of "
                                         r"models\[0\] and models\[1\]"):
        fit_many(models, X, y, opts, epochs=3, callbacks=[stop])
    mixed = [[Callback()], [stop], [EarlyStopping(), stop]]
    with pytest.raises(ValueError, match=r"models\[1\] and models\[2\]"):
        fit_many(models, X, y, opts, epochs=3, per_model={"callbacks": mixed})
    _assert_unchanged(models, before)
    stops = [EarlyStopping(monitor="train_loss", patience=1, min_delta=0.05) for _ in models]
    hists = fit_many(models, X, y, opts, epochs=30, batch_size=16, rng=0,
                     per_model={"callbacks": [[s] for s in stops]})
    refs, ref_opts = _models()
    for i, s in enumerate(stops):
        ref_stop = EarlyStopping(monitor="train_loss", patience=1, min_delta=0.05)
        ref = fit(refs[i], X, y, optimizer=ref_opts[i], epochs=30, batch_size=16, rng=0,
                  progress=False, callbacks=[ref_stop])
        assert hists[i] == ref and 0 < s.stopped_epoch == ref_stop.stopped_epoch < 30
        for k, v in refs[i].state_dict().items():
            np.testing.assert_array_equal(models[i].state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"per_model": {"batch_size": [8, 16, 0]}}, ValueError, r"models\[2\]: batch_size"),
    ({"per_model": {"sample_weight": [None, -np.ones(N), None]}}, ValueError,
     r"models\[1\]: sample_weight must be finite and >= 0; sample_weight\[0\] = -1.0"),
    ({"per_model": {"sample_weight": [None, np.ones(N - 1), None]}}, ValueError,
     r"models\[1\]: sample_weight must have shape \(60,\)"),
    ({"per_model": {"callbacks": [None, None, 3]}}, TypeError, r"models\[2\]: callbacks must"),
    ({"per_model": {"l2": [1, 2]}}, ValueError, "l2 has 2 values for 3 models"),
    ({"per_model": {"l2": 2}}, TypeError, r"per_model\['l2'\] must be a list"),
    ({"per_model": {"batch": [1, 2, 3]}}, TypeError, "fit_many does not take 'batch'"),
    ({"per_model": [1]}, TypeError, "per_model must be a dict"),
    ({"per_model": {"rng": [0, 1, 2]}, "rng": 0}, TypeError, "rng is given both"),
    ({"optimizer": None}, TypeError, r"does not take 'optimizer' \(pass optimizers"),
    ({"batch_size": [8, 16, 32]}, TypeError, r"per_model=\{'batch_size': \[...\]\}"),
])
def test_bad_arguments_are_refused_by_name_before_any_model_trains(kwargs, error, match):
    X, y = _data()
    models, opts = _models()
    before = _states(models)
    with pytest.raises(error, match=match):
        fit_many(models, X, y, opts, epochs=1, **kwargs)
    _assert_unchanged(models, before)
    assert all(not s for o in opts for s in o.state)


def test_an_optimizer_of_another_model_is_refused_before_any_model_trains():
    X, y = _data()
    models, opts = _models()
    before = _states(models)
    with pytest.raises(ValueError, match=r"models\[1\]: optimizer.params\[0\] .* is not a "
                                         "parameter of the model"):
        fit_many(models, X, y, [opts[0], opts[0], opts[2]], epochs=1)
    clones = [copy.deepcopy(m) for m in models]     # the optimizers still hold the originals
    with pytest.raises(ValueError, match=r"models\[0\]: optimizer.params\[0\]"):
        fit_many(clones, X, y, opts, epochs=1)
    _assert_unchanged(models + clones, before + before)
    frozen = [optim.SGD(m[-1].parameters(), lr=0.1) for m in models]   # a subset stays legal
    hists = fit_many(models, X, y, frozen, epochs=1, rng=0)
    assert all(h["engine"].startswith("layers") for h in hists)


def test_one_generator_for_several_models_is_refused_and_one_per_model_works():
    """The fits would draw from it in whatever order the threads run."""
    X, y = _data()
    models, opts = _models()
    before = _states(models)
    with pytest.raises(ValueError, match=r"one Generator object is in the rng of models\[0\] "
                                         r"and models\[1\]"):
        fit_many(models, X, y, opts, epochs=1, rng=np.random.default_rng(0))
    _assert_unchanged(models, before)
    hists = fit_many(models, X, y, opts, epochs=2, batch_size=16,
                     rng=[np.random.default_rng(s) for s in range(3)])
    refs, ref_opts = _models()
    for i in range(3):
        ref = fit(refs[i], X, y, optimizer=ref_opts[i], epochs=2, batch_size=16,
                  rng=np.random.default_rng(i), progress=False)
        assert hists[i] == ref
