"""fastnn.preprocessing: StandardScaler and PCA against float64 references and sklearn."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from fastnn.preprocessing import PCA, NotFittedError, StandardScaler
from tests.conftest import assert_close, hostile_layouts
from tests.reference import preprocessing as ref

DTYPES = [np.float32, np.float64]


def data(shape, dtype=np.float64, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 4.0, shape[1])
    return (rng.standard_normal(shape) * scales + offset).astype(dtype)


def correlated(n, d, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(3.0, 0.3, d)[:, None]
    return (rng.standard_normal((n, d)) @ mix + 2.0).astype(dtype)


# ----------------------------------------------------------------- StandardScaler

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(37, 5), (64, 512)])  # 64 x 512: the parallel twin
def test_scaler_matches_reference(dtype, shape):
    X = data(shape, dtype, offset=3.0)
    s = StandardScaler().fit(X)
    mean, var = ref.mean_var(X)
    assert_close(s.mean_, mean, np.float64, "reduction")
    assert_close(s.var_, var, np.float64, "reduction")
    assert s.n_samples_seen_ == shape[0] and s.n_features_in_ == shape[1]
    Y = s.transform(X)
    assert Y.dtype == dtype and Y.shape == shape
    assert_close(Y, ref.standardize(X), dtype)
    assert_close(s.inverse_transform(Y), X, dtype)


@pytest.mark.parametrize("with_mean,with_std", [(True, True), (True, False), (False, True)])
def test_scaler_matches_sklearn(with_mean, with_std):
    skp = pytest.importorskip("sklearn.preprocessing")
    X = data((200, 6), offset=-5.0)
    X[:, 2] = 7.0  # constant feature
    ours = StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    theirs = skp.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    if with_mean or with_std:
        assert_close(ours.mean_, theirs.mean_, np.float64, "reduction")
    if with_std:
        assert_close(ours.var_, theirs.var_, np.float64, "reduction")
        assert_close(ours.scale_, theirs.scale_, np.float64, "reduction")
        assert ours.scale_[2] == 1.0
    else:
        assert ours.scale_ is None
    assert_close(ours.transform(X), theirs.transform(X), np.float64, "reduction")
    Y = theirs.transform(X)
    assert_close(ours.inverse_transform(Y), theirs.inverse_transform(Y), np.float64, "reduction")


def test_scaler_large_offset_float32():
    """1e4 + N(0, 1) in float32 standardizes to unit variance (no E[x^2]-E[x]^2)."""
    X = data((4096, 8), np.float32, offset=1e4)
    Y = StandardScaler().fit_transform(X).astype(np.float64)
    np.testing.assert_allclose(Y.std(axis=0), 1.0, rtol=1e-3)
    np.testing.assert_allclose(Y.mean(axis=0), 0.0, atol=1e-3)


def test_scaler_constant_features_get_scale_one():
    X = np.empty((1000, 3))
    X[:, 0] = 0.1  # float64 sums of 0.1 round: the variance is ~1e-33, not 0
    X[:, 1] = -3e7
    X[:, 2] = np.arange(1000.0)
    s = StandardScaler().fit(X)
    np.testing.assert_array_equal(s.scale_[:2], [1.0, 1.0])
    Y = s.transform(X)
    assert np.all(np.abs(Y[:, :2]) < 1e-6)


def test_scaler_integer_pixels():
    X = np.random.default_rng(0).integers(0, 256, size=(300, 10), dtype=np.uint8)
    s = StandardScaler().fit(X)
    Y = s.transform(X)
    assert Y.dtype == np.float64
    assert_close(Y, ref.standardize(X.astype(np.float64)), np.float64)
    assert_close(StandardScaler().fit(X.astype(np.int64)).mean_, s.mean_, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scaler_partial_fit_equals_fit(dtype):
    X = data((1000, 7), dtype, seed=3, offset=50.0)
    whole = StandardScaler().fit(X)
    parts = StandardScaler()
    for chunk in np.array_split(X, [1, 2, 300, 301, 777]):
        parts.partial_fit(chunk)
    assert parts.n_samples_seen_ == 1000
    np.testing.assert_allclose(parts.mean_, whole.mean_, rtol=1e-13)
    np.testing.assert_allclose(parts.var_, whole.var_, rtol=1e-12)
    # fit resets what partial_fit accumulated
    parts.fit(X[:10])
    assert parts.n_samples_seen_ == 10


@given(cuts=st.lists(st.integers(1, 199), max_size=8, unique=True),
       seed=st.integers(0, 1000), offset=st.sampled_from([0.0, 1e3, -1e6]))
def test_property_partial_fit_random_chunkings(cuts, seed, offset):
    X = data((200, 3), seed=seed, offset=offset)
    whole = StandardScaler().fit(X)
    parts = StandardScaler()
    for chunk in np.split(X, sorted(cuts)):
        parts.partial_fit(chunk)
    np.testing.assert_allclose(parts.mean_, whole.mean_, rtol=1e-13, atol=1e-12)
    # Each value of X = 1e6 + N(0, s^2) carries ~1e-10 of rounding (its ulp), so
    # chunk means differ from the whole's by ~1e-10 and the merge term moves
    # the variance by ~1e-10 relative (hypothesis found 1.08e-10): 1e-9 allows it.
    np.testing.assert_allclose(parts.var_, whole.var_, rtol=1e-9)


@given(X=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20),
                    elements=st.floats(-1e6, 1e6)),
       with_mean=st.booleans())
def test_property_scaler_round_trip(X, with_mean):
    s = StandardScaler(with_mean=with_mean).fit(X)
    Y = s.transform(X)
    assert np.all(np.isfinite(Y))
    np.testing.assert_allclose(s.inverse_transform(Y), X, rtol=1e-9,
                               atol=1e-9 * max(1.0, np.abs(X).max()))


def test_scaler_nan_ignored_in_fit_kept_in_transform():
    X = data((50, 4))
    X[7, 1] = np.nan
    s = StandardScaler().fit(X)
    np.testing.assert_allclose(s.mean_[1], np.nanmean(X[:, 1]), rtol=1e-12)
    Y = s.transform(X)
    assert np.isnan(Y[7, 1])
    assert np.isfinite(np.delete(Y.ravel(), 7 * 4 + 1)).all()
    clean = StandardScaler().fit(data((50, 4)))
    Z = np.ones((3, 4))
    Z[1, 3] = np.nan
    out = clean.transform(Z)
    assert np.isnan(out[1, 3]) and np.isfinite(np.delete(out.ravel(), 7)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_scaler_hostile_layouts(dtype):
    X = data((40, 6), dtype, offset=1.0)
    expected = StandardScaler().fit(X)
    Yexp = expected.transform(X)
    for name, H in hostile_layouts(X):
        before = H.copy()
        s = StandardScaler().fit(H)
        np.testing.assert_array_equal(s.mean_, expected.mean_, err_msg=name)
        np.testing.assert_array_equal(s.transform(H), Yexp, err_msg=name)
        np.testing.assert_array_equal(H, before, err_msg=name)
    s = StandardScaler().fit(X[:, ::2])  # column-strided view
    assert_close(s.mean_, X[:, ::2].astype(np.float64).mean(axis=0), np.float64, "reduction")


@pytest.mark.parametrize("dtype", DTYPES)
def test_scaler_copy_false_writes_in_place_only_when_it_may(dtype):
    X = data((300, 7), dtype, offset=3.0)
    expected = StandardScaler().fit_transform(X)
    work = X.copy()
    scaler = StandardScaler(copy=False)
    out = scaler.fit_transform(work)
    assert out is work
    np.testing.assert_array_equal(out, expected)
    back = scaler.inverse_transform(out)
    assert back is work
    assert_close(back, X, dtype)
    # Not writeable in place: a copy, and the argument is untouched.
    for name, H in hostile_layouts(X):
        before = H.copy()
        res = scaler.transform(H)
        assert not np.shares_memory(res, H), name
        np.testing.assert_array_equal(H, before, err_msg=name)
    ints = np.arange(12, dtype=np.int32).reshape(4, 3)
    StandardScaler(copy=False).fit_transform(ints)
    np.testing.assert_array_equal(ints, np.arange(12).reshape(4, 3))
    with pytest.raises(TypeError, match="copy"):
        StandardScaler(copy=0)


def test_scaler_errors():
    s = StandardScaler()
    for method in (s.transform, s.inverse_transform):
        with pytest.raises(NotFittedError, match="fit"):
            method(np.ones((2, 2)))
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(ValueError, match="empty"):
        s.fit(np.ones((0, 3)))
    with pytest.raises(ValueError, match="reshape"):
        s.fit(np.ones(5))
    with pytest.raises(ValueError, match="2"):
        s.fit(np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="float16"):
        s.fit(np.ones((3, 2), dtype=np.float16))
    with pytest.raises(TypeError):
        s.fit(np.ones((3, 2), dtype=bool))
    with pytest.raises(TypeError):
        s.fit(np.ones((3, 2), dtype=np.complex128))
    with pytest.raises(TypeError):
        StandardScaler(with_mean="yes")
    s.fit(np.ones((3, 2)))
    X3 = np.ones((3, 3))
    for method in (s.transform, s.inverse_transform, s.partial_fit):
        with pytest.raises(ValueError, match="3 features"):
            method(X3)
    assert s.transform(np.ones((0, 2))).shape == (0, 2)
    assert s.n_samples_seen_ == 3  # the failed partial_fit changed nothing


# ----------------------------------------------------------------- PCA

def sk_pca(**kw):
    return pytest.importorskip("sklearn.decomposition").PCA(**kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_matches_reference(dtype, whiten):
    # 9000 x 64: several row blocks merged by the blocked covariance.
    X = correlated(9000, 64, dtype=dtype)
    p = PCA(whiten=whiten).fit(X)
    comps, ev, ratio, mean, Y = ref.pca(X, whiten=whiten)
    assert p.n_components_ == 64 and p.components_.shape == (64, 64)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(p.mean_, mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(p.explained_variance_, ev, rtol=tol, atol=tol * ev[0])
    np.testing.assert_allclose(p.explained_variance_ratio_, ratio, rtol=tol, atol=tol)
    # Eigenvalues here are well separated, so the components are determined
    # (up to the sign convention, which both apply).
    np.testing.assert_allclose(p.components_, comps, atol=10 * tol)
    out = p.transform(X)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, Y, atol=20 * tol * np.abs(Y).max())
    np.testing.assert_allclose(p.fit_transform(X), out, atol=20 * tol * np.abs(Y).max())
    np.testing.assert_allclose(p.inverse_transform(out), X, atol=20 * tol * np.abs(X).max())


@pytest.mark.parametrize("shape,k", [((500, 8), None), ((500, 8), 3), ((12, 40), None),
                                     ((12, 40), 5)])
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_matches_sklearn(shape, k, whiten):
    X = correlated(*shape, seed=1) if shape[0] > shape[1] else \
        np.random.default_rng(2).standard_normal(shape) * np.linspace(5, 1, shape[1]) + 1.0
    ours = PCA(n_components=k, whiten=whiten).fit(X)
    theirs = sk_pca(n_components=k, whiten=whiten, svd_solver="full").fit(X)
    kk = ours.n_components_
    assert kk == theirs.n_components_
    # Components of the N < D path's last (zero-variance) axis are arbitrary.
    m = kk if shape[0] > shape[1] else min(kk, shape[0] - 1)
    np.testing.assert_allclose(ours.explained_variance_[:m], theirs.explained_variance_[:m],
                               rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_ratio_[:m],
                               theirs.explained_variance_ratio_[:m], rtol=1e-9)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.components_[:m], theirs.components_[:m], atol=1e-8)
    Y = ours.transform(X)[:, :m]
    Ys = theirs.transform(X)[:, :m]
    if whiten:  # ours divides by sqrt(ev + eps), sklearn by sqrt(ev)
        ev = ours.explained_variance_[:m]
        Y = Y * np.sqrt((ev + ours.eps) / ev)
    np.testing.assert_allclose(Y, Ys, atol=1e-8 * np.abs(Ys).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_pca_whitened_covariance_is_identity(dtype):
    X = correlated(20000, 16, seed=4, dtype=dtype)  # 320000 elements: parallel paths
    p = PCA(whiten=True)
    Y = p.fit_transform(X).astype(np.float64)
    ev = p.explained_variance_
    assert ev.min() > 1e3 * p.eps
    expected = np.diag(ev / (ev + p.eps))
    if dtype == np.float64:
        np.testing.assert_allclose(np.cov(Y, rowvar=False), expected, atol=1e-9)
    else:
        # The float32 projection's rounding grows for the small-variance
        # directions, as the square root of how much whitening scales them up
        # (sqrt(ev_max / ev_j), ~68 for the last one here); the BLAS's own
        # summation order (AVX2 vs AVX-512 kernels) moves the last digits.
        amplify = np.sqrt(ev.max() / ev)
        atol = 64 * np.finfo(np.float32).eps * np.sqrt(np.outer(amplify, amplify))
        assert np.all(np.abs(np.cov(Y, rowvar=False) - expected) <= atol)


def test_pca_large_offset_float32():
    """Offset 1e4, unit-scale spread: uncentered float32 products would lose it all."""
    X32 = (correlated(5000, 6, seed=5, dtype=np.float64) + 1e4).astype(np.float32)
    p32 = PCA().fit(X32)
    p64 = PCA().fit(X32.astype(np.float64))
    ev = p64.explained_variance_
    np.testing.assert_allclose(p32.explained_variance_, ev, rtol=1e-4, atol=1e-5 * ev[0])
    np.testing.assert_allclose(p32.mean_, p64.mean_, rtol=1e-12)


def test_pca_rank_deficient_is_finite():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((300, 3))
    X = np.column_stack([base, base[:, 0], np.full(300, 5.0), 2 * base[:, 1]])  # rank 3 of 6
    for whiten in (False, True):
        p = PCA(whiten=whiten).fit(X)
        Y = p.transform(X)
        assert np.all(np.isfinite(Y)) and np.all(np.isfinite(p.components_))
        assert np.all(p.explained_variance_ >= 0)
        assert np.all(p.explained_variance_[3:] < 1e-12)
        np.testing.assert_allclose(p.inverse_transform(Y), X, atol=1e-9)
    const = PCA(whiten=True).fit(np.ones((10, 4)))
    assert np.all(const.explained_variance_ == 0) and np.all(const.explained_variance_ratio_ == 0)
    assert np.all(const.transform(np.ones((2, 4))) == 0)


def test_pca_sign_convention_deterministic():
    X = correlated(400, 5, seed=7)
    a = PCA().fit(X).components_
    b = PCA().fit(-X).components_  # negated data: same axes, same signs
    c = PCA().fit(X[::-1]).components_  # other row order
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a, c, atol=1e-12)
    idx = np.argmax(np.abs(a), axis=1)
    assert np.all(a[np.arange(5), idx] > 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pca_hostile_layouts(dtype):
    X = correlated(60, 5, seed=8, dtype=dtype)
    p = PCA(whiten=True).fit(X)
    Yexp = p.transform(X)
    for name, H in hostile_layouts(X):
        before = H.copy()
        q = PCA(whiten=True).fit(H)
        np.testing.assert_array_equal(q.components_, p.components_, err_msg=name)
        np.testing.assert_array_equal(q.transform(H), Yexp, err_msg=name)
        np.testing.assert_array_equal(H, before, err_msg=name)


def test_pca_integer_input():
    X = np.random.default_rng(9).integers(0, 256, size=(100, 6), dtype=np.uint8)
    p = PCA().fit(X)
    Y = p.transform(X)
    assert Y.dtype == np.float64
    np.testing.assert_allclose(Y, PCA().fit_transform(X.astype(np.float64)), atol=1e-9)


def test_pca_nan_in_nan_out():
    X = correlated(50, 4, seed=10)
    p = PCA().fit(X)
    Z = X[:3].copy()
    Z[1, 2] = np.nan
    Y = p.transform(Z)
    assert np.all(np.isnan(Y[1])) and np.all(np.isfinite(Y[[0, 2]]))
    for bad in (Z, np.concatenate([Z, Z, Z]), np.where(np.isnan(Z), np.inf, Z)):
        with pytest.raises(ValueError, match="NaN or infinity"):
            PCA().fit(bad)  # covariance path (N >= D) and SVD path (N < D)
    with pytest.raises(ValueError, match="NaN or infinity"):
        PCA().fit(Z.T)


@given(n=st.integers(2, 30), d=st.integers(1, 8), seed=st.integers(0, 1000),
       whiten=st.booleans())
def test_property_pca_round_trip(n, d, seed, whiten):
    X = np.random.default_rng(seed).standard_normal((n, d)) * 3 + 1
    p = PCA(whiten=whiten).fit(X)
    Y = p.transform(X)
    if n > d:  # all axes kept: the transform is invertible
        np.testing.assert_allclose(p.inverse_transform(Y), X, atol=1e-8)
    rows = np.linalg.norm(p.components_, axis=1)
    np.testing.assert_allclose(rows, 1.0, atol=1e-10)
    assert np.all(np.diff(p.explained_variance_) <= 1e-12 * max(1.0, p.explained_variance_[0]))


def test_pca_errors():
    X = correlated(20, 4)
    with pytest.raises(NotFittedError):
        PCA().transform(X)
    with pytest.raises(NotFittedError):
        PCA().inverse_transform(X)
    with pytest.raises(ValueError, match="n_components"):
        PCA(n_components=0)
    with pytest.raises(TypeError):
        PCA(n_components=2.5)
    with pytest.raises(ValueError, match="n_components"):
        PCA(n_components=5).fit(X)
    with pytest.raises(ValueError, match="eps"):
        PCA(eps=0.0)
    with pytest.raises(TypeError):
        PCA(whiten=1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        PCA().fit(X[:1])
    with pytest.raises(ValueError, match="2 samples"):
        PCA().fit(np.ones((0, 4)))
    with pytest.raises(ValueError, match="1 feature"):
        PCA().fit(np.ones((5, 0)))
    with pytest.raises(ValueError, match="reshape"):
        PCA().fit(X[:, 0])
    with pytest.raises(TypeError):
        PCA().fit(X.astype(np.float16))
    p = PCA(n_components=2).fit(X)
    with pytest.raises(ValueError, match="features"):
        p.transform(X[:, :3])
    with pytest.raises(ValueError, match="features"):
        p.inverse_transform(np.ones((3, 3)))
    assert p.transform(np.ones((0, 4))).shape == (0, 2)
    assert "n_components=2" in repr(p)


def _with_missing(seed=0):
    X = np.random.default_rng(seed).standard_normal((60, 5)) * 3 + 10
    X[3, 1] = X[7, 0] = X[8, 1] = np.nan
    X[:, 4] = np.nan                                  # a feature with no value at all
    return X


@pytest.mark.parametrize("dtype", DTYPES)
def test_standard_scaler_ignores_nan_in_fit_and_keeps_it_in_transform(dtype):
    from sklearn.preprocessing import StandardScaler as SkScaler
    X = _with_missing().astype(dtype)
    ours = StandardScaler().fit(X)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = SkScaler().fit(X.astype(np.float64))
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-10)
    np.testing.assert_array_equal(ours.n_samples_seen_, theirs.n_samples_seen_)
    Y = ours.transform(X)
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(X))
    np.testing.assert_allclose(Y, theirs.transform(X.astype(np.float64)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, equal_nan=True)


def test_standard_scaler_partial_fit_with_nan_equals_fit():
    X = _with_missing(1)
    whole = StandardScaler().fit(X)
    parts = StandardScaler()
    for chunk in np.array_split(X, [2, 5, 30]):     # chunks with and without NaN, in any order
        parts.partial_fit(chunk)
    np.testing.assert_allclose(parts.mean_, whole.mean_, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(parts.var_, whole.var_, rtol=1e-10, equal_nan=True)
    np.testing.assert_array_equal(parts.n_samples_seen_, whole.n_samples_seen_)


def test_standard_scaler_refuses_inf_in_fit_by_position():
    X = _with_missing()
    X[5, 2] = -np.inf
    with pytest.raises(ValueError, match=r"infinity \(X\[5, 2\] = -inf\)"):
        StandardScaler().fit(X)


def test_pca_says_what_is_wrong_with_non_finite_statistics():
    X = np.random.default_rng(0).standard_normal((50, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="finite but the covariance overflows float64"):
            PCA().fit(X * 1e200)
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(X\[2, 3\] = nan\)"):
        PCA().fit(X)


def test_standard_scaler_nan_merge_keeps_huge_means_finite():
    # a chunk whose column 0 is all NaN merged with means of 2e154: delta**2 * 0
    # must not become inf * 0 = NaN
    s = StandardScaler().partial_fit(np.array([[2e154, 1.0], [2e154, 2.0]]))
    s.partial_fit(np.array([[np.nan, 3.0], [np.nan, 4.0]]))
    np.testing.assert_allclose(s.mean_, [2e154, 2.5])
    assert s.var_[0] == 0.0 and s.scale_[0] == 1.0
    np.testing.assert_array_equal(s.n_samples_seen_, [2, 4])


def test_standard_scaler_nan_path_works_in_blocks(monkeypatch):
    import fastnn.preprocessing as pp
    monkeypatch.setattr(pp, "_NAN_BLOCK_ROWS", 7)       # many blocks, a ragged last one
    X = _with_missing(2)
    blocked = StandardScaler().fit(X)
    monkeypatch.setattr(pp, "_NAN_BLOCK_ROWS", 10 ** 6)
    whole = StandardScaler().fit(X)
    np.testing.assert_allclose(blocked.mean_, whole.mean_, rtol=1e-13, equal_nan=True)
    np.testing.assert_allclose(blocked.var_, whole.var_, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(blocked.n_samples_seen_, whole.n_samples_seen_)
    X[40, 3] = np.inf
    with pytest.raises(ValueError, match=r"X\[40, 3\] = inf"):
        StandardScaler().fit(X)
