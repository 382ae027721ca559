"""fastnn.estimators' ``normalization=None | "batch" | "layer"`` and its ``batch_norm`` alias."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn import nn
from fastnn.estimators import MLPClassifier, MLPRegressor

# scikit-learn's checks, with layer normalization (settings as tests/test_estimators.py).
CHECKED = [MLPClassifier(max_iter=100, random_state=0, normalization="layer"),
           MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01,
                        random_state=0, normalization="layer")]
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data":
        "float32 rounding against the check's rtol 1e-7, as without normalization "
        "(tests/test_estimators.py)",
}
REGRESSOR_EXPECTED_FAILED = {
    **EXPECTED_FAILED,
    "check_methods_subset_invariance":
        "fails for MLPRegressor without normalization on main too (not layer norm's: "
        "layer norm treats every row on its own)",
}


def _expected(est):
    return REGRESSOR_EXPECTED_FAILED if isinstance(est, MLPRegressor) else EXPECTED_FAILED


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(CHECKED, expected_failed_checks=_expected)
def test_sklearn_estimator_checks_with_layer_norm(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _norm_layers(est):
    return [type(m) for m in est._model if type(m) in (nn.BatchNorm1d, nn.LayerNorm)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_layer_normalization_trains_on_the_compiled_engine(iris):
    X, y = iris
    clf = MLPClassifier((16, 8), normalization="layer", learning_rate_init=0.01, batch_size=32,
                        random_state=0).fit(X, y)
    assert _norm_layers(clf) == [nn.LayerNorm, nn.LayerNorm]
    assert clf._engine == "compiled"
    assert clf.score(X, y) > 0.9
    # LayerNorm sits between each hidden Linear and its activation
    kinds = [type(m).__name__ for m in clf._model]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    reg = MLPRegressor(hidden_layer_sizes=(8,), normalization="layer", max_iter=5,
                       random_state=0).fit(X, X[:, 0])
    assert _norm_layers(reg) == [nn.LayerNorm] and reg.predict(X[:3]).shape == (3,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batch_norm_true_is_an_alias_of_normalization_batch(iris):
    X, y = iris
    old = MLPClassifier((8,), batch_norm=True, max_iter=5, random_state=0).fit(X, y)
    new = MLPClassifier((8,), normalization="batch", max_iter=5, random_state=0).fit(X, y)
    both = MLPClassifier((8,), batch_norm=True, normalization="batch", max_iter=5,
                         random_state=0).fit(X, y)
    assert _norm_layers(old) == _norm_layers(new) == _norm_layers(both) == [nn.BatchNorm1d]
    np.testing.assert_array_equal(old.predict_proba(X), new.predict_proba(X))
    np.testing.assert_array_equal(both.predict_proba(X), new.predict_proba(X))
    plain = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    assert _norm_layers(plain) == []


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_a_contradictory_pair_is_refused_at_fit(cls, iris):
    X, y = iris
    est = cls(batch_norm=True, normalization="layer")   # __init__ only stores
    assert est.get_params()["normalization"] == "layer"
    with pytest.raises(ValueError, match=r"batch_norm=True .* normalization='layer'"):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")
    clone(est)   # still a valid estimator to clone and fix
    with pytest.raises(ValueError, match="normalization"):
        cls(normalization="group").fit(X, y)
