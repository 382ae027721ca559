"""fastnn.dask: fits on dask arrays equal the in-memory fits, lazy transforms and
predictions, streaming training, and kernels under Dask's schedulers."""
import itertools
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastnn._config as config
from fastnn import dask as fd, nn, preprocessing, train
from fastnn._cpu import preprocessing as kernels
from tests.conftest import assert_close
from tests.reference import preprocessing as ref

N, D = 3001, 12
# Row chunkings of N rows: uniform, ragged, a single-row chunk, an empty one.
CHUNKINGS = {
    "one-block": (N,),
    "uniform": 500,
    "ragged": (1, 7, 993, 1000, 400, 600),
    "single-row-first": (1, 3000),
    "single-row-last": (3000, 1),
    "empty-chunk": (1500, 0, 1501),
    "many-small": 37,
}


def data(n=N, d=D, dtype=np.float64, seed=0, offset=1e3):
    """Correlated columns of different scales around a large offset."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(3.0, 0.3, d)[:, None]
    return (rng.standard_normal((n, d)) @ mix + offset).astype(dtype)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def chunked(X, rows, cols=-1):
    return da.from_array(X, chunks=(rows, cols))


# ----------------------------------------------------------------- StandardScaler

@pytest.mark.parametrize("name", list(CHUNKINGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaler_fit_equals_in_memory_fit_whatever_the_chunking(name, dtype):
    X = data(dtype=dtype)
    ours = fd.StandardScaler().fit(chunked(X, CHUNKINGS[name]))
    mem = preprocessing.StandardScaler().fit(X)
    assert isinstance(ours.mean_, np.ndarray) and ours.n_samples_seen_ == N
    assert rel(ours.mean_, mem.mean_) < 1e-12
    assert rel(ours.var_, mem.var_) < 1e-10
    mean, var = ref.mean_var(X)               # the float64 reference, independently
    assert_close(ours.mean_, mean, np.float64, "reduction")
    assert_close(ours.var_, var, np.float64, "reduction")


@settings(max_examples=15)
@given(cuts=st.lists(st.integers(0, 400), min_size=1, max_size=8), split_every=st.integers(2, 5))
def test_scaler_any_row_chunking_and_tree_shape(cuts, split_every):
    X = data(n=401, d=3, seed=1)
    bounds = sorted(set(cuts) | {0, 401})
    rows = tuple(np.diff(bounds))
    ours = fd.StandardScaler(split_every=split_every).fit(chunked(X, rows))
    mem = preprocessing.StandardScaler().fit(X)
    assert rel(ours.mean_, mem.mean_) < 1e-12
    assert rel(ours.var_, mem.var_) < 1e-10


def test_scaler_column_chunks_and_partial_fit():
    X = data()
    ours = fd.StandardScaler().fit(chunked(X[:1000], 300, cols=5))     # chunked along features too
    ours.partial_fit(chunked(X[1000:], 700))
    mem = preprocessing.StandardScaler().fit(X)
    assert ours.n_samples_seen_ == N
    assert rel(ours.mean_, mem.mean_) < 1e-12 and rel(ours.var_, mem.var_) < 1e-10
    ours.partial_fit(X[:10])                                            # numpy still works
    assert ours.n_samples_seen_ == N + 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaler_transform_is_lazy_in_the_input_dtype(dtype):
    X = data(dtype=dtype)
    Xd = chunked(X, CHUNKINGS["ragged"])
    ours = fd.StandardScaler().fit(Xd)
    Y = ours.transform(Xd)
    assert isinstance(Y, da.Array) and Y.dtype == dtype and Y.chunks == Xd.chunks
    mem = preprocessing.StandardScaler().fit(X)
    assert_close(Y.compute(), mem.transform(X), dtype)
    back = ours.inverse_transform(Y)
    assert isinstance(back, da.Array) and back.dtype == dtype
    assert_close(back.compute(), X, dtype, scale=np.abs(X).max())
    assert_close(ours.fit_transform(Xd).compute(), mem.transform(X), dtype)


def test_scaler_integers_become_float64_and_copy_false_leaves_blocks_alone():
    X = np.random.default_rng(2).integers(0, 256, (500, 4)).astype(np.uint8)
    Xd = chunked(X, 128)
    ours = fd.StandardScaler(copy=False).fit(Xd)
    Y = ours.transform(Xd)
    assert Y.dtype == np.float64
    np.testing.assert_allclose(Y.compute(), preprocessing.StandardScaler().fit_transform(X),
                               rtol=1e-12, atol=1e-12)
    F = chunked(data(n=500, d=4), 128).persist()
    before = F.compute().copy()
    fd.StandardScaler(copy=False).fit(F).transform(F).compute()
    np.testing.assert_array_equal(F.compute(), before)


@pytest.mark.parametrize("rows", [100, (1, 16, 17, 200, 66)])
def test_scaler_leaves_nan_out_as_in_memory(rows):
    X = data(n=300, d=4)
    X[17, 1] = np.nan                 # counts per column differ from here on
    X[120:130, 2] = np.nan
    X[:, 3] = np.nan                  # a feature with no value at all
    ours = fd.StandardScaler().fit(chunked(X, rows))
    with np.errstate(invalid="ignore"):
        mem = preprocessing.StandardScaler().fit(X)
    np.testing.assert_array_equal(ours.n_samples_seen_, mem.n_samples_seen_)
    np.testing.assert_array_equal(ours.n_samples_seen_, [300, 299, 290, 0])
    assert rel(ours.mean_[:3], mem.mean_[:3]) < 1e-12 and rel(ours.var_[:3], mem.var_[:3]) < 1e-10
    assert np.isnan(ours.mean_[3]) and np.isnan(mem.mean_[3])
    np.testing.assert_allclose(ours.mean_[:3], np.nanmean(X[:, :3], axis=0), rtol=1e-12)


def test_scaler_refuses_infinity_naming_where_it_is():
    X = data(n=300, d=3)
    X[250, 2] = np.inf
    with pytest.raises(ValueError, match=r"X\[50, 2\] = inf.*from row 200 of X"):
        fd.StandardScaler().fit(chunked(X, 100))


# ----------------------------------------------------------------- PCA

@pytest.mark.parametrize("name", ["uniform", "ragged", "single-row-first", "empty-chunk",
                                  "many-small"])
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_fit_equals_in_memory_fit_whatever_the_chunking(name, whiten):
    X = data()
    ours = fd.PCA(n_components=6, whiten=whiten, eps=1e-3).fit(chunked(X, CHUNKINGS[name]))
    mem = preprocessing.PCA(n_components=6, whiten=whiten, eps=1e-3).fit(X)
    assert rel(ours.mean_, mem.mean_) < 1e-12
    assert rel(ours.explained_variance_, mem.explained_variance_) < 1e-10
    sign = np.sign(np.sum(ours.components_ * mem.components_, axis=1))   # up to sign
    np.testing.assert_allclose(ours.components_ * sign[:, None], mem.components_, atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio_, mem.explained_variance_ratio_,
                               rtol=1e-10)
    # Float64 reference: eigenvalues of the covariance computed by numpy.
    ev = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1][:6]
    np.testing.assert_allclose(ours.explained_variance_, ev, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pca_transform_is_lazy_and_round_trips(dtype):
    X = data(dtype=dtype, offset=5.0)
    Xd = chunked(X, CHUNKINGS["ragged"])
    ours = fd.PCA(whiten=True).fit(Xd)
    mem = preprocessing.PCA(whiten=True).fit(X)
    Y = ours.transform(Xd)
    assert isinstance(Y, da.Array) and Y.dtype == dtype and Y.shape == (N, D)
    if dtype == np.float64:
        assert_close(Y.compute(), mem.transform(X), dtype, scale=10.0)
    else:
        # Float32 scatter products (as the in-memory fit computes them) leave the
        # smallest axis (eigenvalue 1.8e-3 of 155) accurate to ~1e-3 only, and
        # whitening magnifies that: both fits are judged against float64.
        exact = preprocessing.PCA(whiten=True).fit(X.astype(np.float64))
        for got in (Y.compute(), mem.transform(X)):
            np.testing.assert_allclose(got, exact.transform(X.astype(np.float64)), atol=5e-3)
    back = ours.inverse_transform(Y)
    assert isinstance(back, da.Array) and back.dtype == dtype
    assert_close(back.compute(), X, dtype, scale=np.abs(X).max() * 10)
    assert ours.fit_transform(Xd).shape == (N, D)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the inf row
def test_pca_fewer_rows_than_features_and_errors():
    X = data(n=5, d=9)
    ours = fd.PCA(n_components=3).fit(chunked(X, 2))
    mem = preprocessing.PCA(n_components=3).fit(X)
    np.testing.assert_allclose(ours.components_, mem.components_, atol=1e-12)
    with pytest.raises(ValueError, match="n_components=6"):
        fd.PCA(n_components=6).fit(chunked(X, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fd.PCA().fit(chunked(X[:1], 1))
    Xn = data(n=100, d=3)
    Xn[50, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fd.PCA().fit(chunked(Xn, 30))
    with pytest.raises(ValueError, match="Y has 2 features"):
        fd.PCA(n_components=3).fit(chunked(data(n=100, d=4), 30)).inverse_transform(
            da.zeros((4, 2), chunks=2))


# ----------------------------------------------------------------- hostile input

def test_hostile_inputs_are_refused_before_any_work():
    with pytest.raises(ValueError, match="2-D"):
        fd.StandardScaler().fit(da.zeros(10, chunks=5))
    with pytest.raises(TypeError, match="float16"):
        fd.StandardScaler().fit(da.zeros((10, 2), dtype=np.float16, chunks=5))
    with pytest.raises(TypeError, match="complex"):
        fd.PCA().fit(da.zeros((10, 2), dtype=np.complex128, chunks=5))
    X = da.from_array(data(n=100, d=3), chunks=10)
    unknown = X[X[:, 0] > 1000]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.StandardScaler().fit(unknown)
    with pytest.raises(ValueError, match="empty"):
        fd.StandardScaler().fit(X[:0])
    for bad, exc in ((1, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError),
                     ("4", TypeError)):
        with pytest.raises(exc, match="split_every"):
            fd.PCA(split_every=bad)
    with pytest.raises(preprocessing.NotFittedError):
        fd.StandardScaler().transform(X)
    sc = fd.StandardScaler().fit(X)
    with pytest.raises(ValueError, match="X has 2 features"):
        sc.transform(X[:, :2])
    with pytest.raises(ValueError, match="X has 2 features"):
        sc.partial_fit(X[:, :2])
    assert sc.n_samples_seen_ == 100          # the refused chunk changed nothing


# ----------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def digits_model():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X, y = sklearn_datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    model = nn.Sequential(nn.Linear(64, 64, rng=0), nn.ReLU(), nn.Linear(64, 10, rng=1))
    train.fit(model, X, y, epochs=2, batch_size=64, rng=0, progress=False)
    return model, X, y


def test_predict_matches_in_memory_and_sends_the_model_once(digits_model):
    model, X, _ = digits_model
    Xd = chunked(X, (100, 1, 500, 1196))
    out = fd.predict(model, Xd)
    proba = fd.predict_proba(model, Xd, batch_size=64)
    assert isinstance(out, da.Array) and out.shape == (len(X), 10) and out.dtype == np.float32
    assert_close(out.compute(), train.predict(model, X), np.float32)
    assert_close(proba.compute(), train.predict_proba(model, X), np.float32)
    graph = dict(out.__dask_graph__())
    model_keys = [k for k in graph if isinstance(k, str) and k.startswith("fastnn-model-")]
    assert len(model_keys) == 1
    weights = sum(p.data.nbytes for p in model.parameters())
    block_tasks = [v for k, v in graph.items() if isinstance(k, tuple) and k[0] == out.name]
    assert len(block_tasks) == 4
    # Each task refers to the model's key: its pickle is far smaller than the weights.
    assert max(len(pickle.dumps(t)) for t in block_tasks) < weights / 4


def test_predict_uses_a_snapshot_of_the_model_in_eval_mode(digits_model):
    _, X, _ = digits_model
    m = nn.Sequential(nn.Linear(64, 32, rng=3), nn.Dropout(0.5), nn.Linear(32, 10, rng=4))
    m.train()
    out = fd.predict(m, chunked(X, 400))
    expected = train.predict(m, X)                     # eval mode: dropout off
    m[0].weight.data[:] = 0.0                           # later changes do not leak in
    assert_close(out.compute(), expected, np.float32)
    assert m.training


def test_predict_with_scikit_learn_estimators(digits_model):
    linear_model = pytest.importorskip("sklearn.linear_model")
    _, X, y = digits_model
    clf = linear_model.LogisticRegression(max_iter=200).fit(X, y)
    Xd = chunked(X, 333)
    labels = fd.predict(clf, Xd)
    assert labels.shape == (len(X),)
    np.testing.assert_array_equal(labels.compute(), clf.predict(X))
    # Each block is scikit-learn's own predict_proba of those rows, exactly;
    # against the whole array only to float32 rounding: the BLAS blocks a
    # float32 product by its row count (OpenBLAS's AVX2 kernels differ from
    # the whole-array call in the last bit on some rows).
    proba = fd.predict_proba(clf, Xd).compute()
    bounds = np.cumsum((0,) + Xd.chunks[0])
    for a, b in itertools.pairwise(bounds):
        np.testing.assert_array_equal(proba[a:b], clf.predict_proba(X[a:b]))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="predict_proba"):
        fd.predict_proba(object(), Xd)
    with pytest.raises(ValueError, match="batch_size"):
        fd.predict(clf, Xd, batch_size=0)


# ----------------------------------------------------------------- streaming training

def _blocks_in_memory(X, y, rows, epochs, seed, shuffle=True):
    """The (X, y) blocks fit_incremental visits, in its documented order."""
    bounds = np.cumsum((0,) + rows)
    blocks = [(X[a:b], None if y is None else y[a:b]) for a, b in itertools.pairwise(bounds)]
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(blocks)) if shuffle else range(len(blocks))
        yield from (blocks[i] for i in order)


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_incremental_equals_partial_fit_over_the_same_blocks(shuffle, digits_model):
    linear_model = pytest.importorskip("sklearn.linear_model")
    _, X, y = digits_model
    rows = (300, 1, 500, 996)
    got = fd.fit_incremental(linear_model.SGDClassifier(random_state=0), chunked(X, rows),
                             da.from_array(y, chunks=700), epochs=3, shuffle_blocks=shuffle,
                             random_state=7, classes=np.arange(10))
    want = linear_model.SGDClassifier(random_state=0)
    for xb, yb in _blocks_in_memory(X, y, rows, 3, 7, shuffle):
        want.partial_fit(xb, yb, classes=np.arange(10))
    np.testing.assert_array_equal(got.coef_, want.coef_)
    np.testing.assert_array_equal(got.intercept_, want.intercept_)


def test_fit_incremental_mlp_and_fastnn_scaler(digits_model):
    neural_network = pytest.importorskip("sklearn.neural_network")
    _, X, y = digits_model
    rows = (600, 597, 600)
    got = fd.fit_incremental(neural_network.MLPClassifier((16,), random_state=0),
                             chunked(X, rows), y, epochs=2, random_state=1, classes=np.arange(10))
    want = neural_network.MLPClassifier((16,), random_state=0)
    for xb, yb in _blocks_in_memory(X, y, rows, 2, 1):
        want.partial_fit(xb, yb, classes=np.arange(10))
    for a, b in zip(got.coefs_, want.coefs_):
        np.testing.assert_array_equal(a, b)
    sc = fd.fit_incremental(preprocessing.StandardScaler(), chunked(X, rows), epochs=1)
    mem = preprocessing.StandardScaler()
    for xb, _ in _blocks_in_memory(X, None, rows, 1, None):
        mem.partial_fit(xb)
    assert rel(sc.mean_, mem.mean_) < 1e-12 and sc.n_samples_seen_ == len(X)


def _fastnn_mlp():
    estimators = pytest.importorskip("fastnn.estimators")
    return estimators.MLPClassifier((16,), random_state=0)


def test_fit_incremental_fastnn_estimator(digits_model):
    _, X, y = digits_model
    rows = (600, 597, 600)
    got = fd.fit_incremental(_fastnn_mlp(), chunked(X, rows), y, epochs=2, random_state=1,
                             classes=np.arange(10))
    want = _fastnn_mlp()
    for xb, yb in _blocks_in_memory(X, y, rows, 2, 1):
        want.partial_fit(xb, yb, classes=np.arange(10))
    for a, b in zip(got.coefs_ + got.intercepts_, want.coefs_ + want.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_dask_ml_incremental_trains_fastnn_estimators_as_partial_fit_in_memory(digits_model):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    _, X, y = digits_model
    rows = (600, 597, 600)
    inc = wrappers.Incremental(_fastnn_mlp(), shuffle_blocks=False, scoring="accuracy")
    inc.fit(chunked(X, rows), da.from_array(y, chunks=(rows,)), classes=np.arange(10))
    want = _fastnn_mlp()
    for xb, yb in _blocks_in_memory(X, y, rows, 1, None, shuffle=False):
        want.partial_fit(xb, yb, classes=np.arange(10))
    for a, b in zip(inc.estimator_.coefs_ + inc.estimator_.intercepts_,
                    want.coefs_ + want.intercepts_):
        np.testing.assert_array_equal(a, b)
    pred = inc.predict(chunked(X, rows))
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), want.predict(X))


def test_predict_proba_of_a_binary_cross_entropy_model(digits_model):
    _, X, _ = digits_model
    model = nn.Sequential(nn.Linear(64, 3, rng=0))
    got = fd.predict_proba(model, chunked(X, 500), loss="binary_cross_entropy").compute()
    want = train.predict_proba(model, X, loss="binary_cross_entropy")
    np.testing.assert_allclose(got, want, rtol=1e-6)     # per-block products round differently
    assert not np.allclose(got.sum(axis=1), 1)          # independent sigmoids
    linear_model = pytest.importorskip("sklearn.linear_model")
    est = linear_model.LogisticRegression().fit(X[:200], (X[:200, 10] > 0.2).astype(int))
    with pytest.raises(ValueError, match="for fastnn models"):
        fd.predict_proba(est, chunked(X, 500), loss="binary_cross_entropy")


def test_fit_incremental_refuses_bad_arguments(digits_model):
    _, X, y = digits_model
    Xd = chunked(X, 500)
    with pytest.raises(TypeError, match="partial_fit"):
        fd.fit_incremental(object(), Xd, y)
    with pytest.raises(ValueError, match="epochs"):
        fd.fit_incremental(preprocessing.StandardScaler(), Xd, epochs=0)
    with pytest.raises(TypeError, match=r"dask\.array\.Array, got ndarray"):
        fd.fit_incremental(preprocessing.StandardScaler(), X)
    with pytest.raises(TypeError, match=r"dask\.array\.Array, got list"):
        fd.predict(nn.Sequential(nn.Linear(64, 2, rng=0)), [[0.0] * 64])
    with pytest.raises(ValueError, match="y has 10 rows"):
        fd.fit_incremental(preprocessing.StandardScaler(), Xd, y[:10])


# ----------------------------------------------------------------- schedulers and threads

def test_kernels_off_the_main_thread_run_serial_twins():
    seen = {}

    def probe():
        seen["kernel"] = kernels.column_moments.pick(1 << 24)
        seen["allowed"] = config.parallel_allowed()
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert seen["kernel"] is kernels.column_moments.serial and seen["allowed"] is False
    assert kernels.column_moments.pick(1 << 24) is kernels.column_moments.parallel


def test_threaded_scheduler_gives_the_single_threaded_results():
    # Blocks of 256 x 256 elements: above the tests' parallel threshold, so the
    # synchronous run (main thread) takes the parallel twins and the threaded
    # run (4 worker threads) the serial ones.
    X = data(n=4096, d=256, dtype=np.float32, offset=10.0)
    Xd = chunked(X, 256)
    assert 256 * 256 >= config.PARALLEL_THRESHOLD
    results = {}
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler, num_workers=4):
            sc = fd.StandardScaler().fit(Xd)
            pca = fd.PCA(n_components=8).fit(Xd)
            results[scheduler] = (sc.mean_, sc.var_, sc.transform(Xd).compute(),
                                  pca.explained_variance_)
    for a, b in zip(results["synchronous"], results["threads"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_concurrent_parallel_sized_kernels_under_the_workqueue_layer():
    """numba's workqueue layer aborts the process when two threads enter parallel
    regions at once: with fastnn's policy only the main thread does."""
    code = textwrap.dedent("""
        import threading
        import numpy as np
        import numba
        import fastnn.functional as F
        from fastnn.preprocessing import StandardScaler
        X = np.random.default_rng(0).standard_normal((2048, 1024)).astype(np.float32)
        want = (F.dropout(X, 0.5, seed=3).sum(), StandardScaler().fit(X).mean_.sum())
        assert numba.threading_layer() == "workqueue", numba.threading_layer()
        bad = []
        def work():
            for _ in range(5):
                got = (F.dropout(X, 0.5, seed=3).sum(), StandardScaler().fit(X).mean_.sum())
                if abs(got[0] - want[0]) > 1e-2 * abs(want[0]) or abs(got[1] - want[1]) > 1e-9:
                    bad.append(got)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        work()                                  # the main thread goes parallel meanwhile
        for t in threads:
            t.join()
        assert not bad, bad
        print("ok")
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def _worker_facts():
    """Run inside a dask worker: where numba caches, what it loaded from there."""
    from numba.core import config as numba_config
    hits = sum(sum(k.serial.stats.cache_hits.values())
               for k in (kernels.column_moments, kernels.center_columns))
    return {"cache_dir": numba_config.CACHE_DIR, "hits": hits,
            "parallel_allowed": config.parallel_allowed()}


def test_local_cluster_two_worker_processes(digits_model):
    distributed = pytest.importorskip("distributed")
    model, Xdig, _ = digits_model
    X = data(n=6000, d=16, offset=50.0)
    Xd = chunked(X, 700)
    mem_sc = preprocessing.StandardScaler().fit(X)
    mem_pca = preprocessing.PCA(n_components=4, whiten=True).fit(X)
    # Compile (and cache on disk) the serial twins here first, so the workers load them.
    kernels.column_moments.serial(X, 1)
    kernels.center_columns.serial(X, 1, np.empty_like(X))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        sc = fd.StandardScaler().fit(Xd)
        pca = fd.PCA(n_components=4, whiten=True).fit(Xd)
        Y = pca.transform(Xd).compute()
        out = fd.predict(model, chunked(Xdig, 300)).compute()
        facts = client.run(_worker_facts)
        task_facts = client.submit(_worker_facts, pure=False).result()
    assert rel(sc.mean_, mem_sc.mean_) < 1e-12 and rel(sc.var_, mem_sc.var_) < 1e-10
    assert rel(pca.explained_variance_, mem_pca.explained_variance_) < 1e-10
    assert_close(Y, mem_pca.transform(X), np.float64, scale=10.0)
    assert_close(out, train.predict(model, Xdig), np.float32)
    assert len(facts) == 2
    from numba.core import config as numba_config
    for f in facts.values():
        assert f["cache_dir"] == numba_config.CACHE_DIR
        assert f["hits"] >= 1, facts            # kernels came from the on-disk cache
    assert task_facts["parallel_allowed"] is False   # tasks run in worker threads: serial


def test_importing_fastnn_does_not_import_dask():
    code = ("import sys, fastnn, fastnn.preprocessing, fastnn.nn, fastnn.train, fastnn.optim; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_benchmark_script_smoke(tmp_path):
    """benchmarks/dask_scale.py end to end at a tiny size (the real run is by hand)."""
    pytest.importorskip("psutil")
    pytest.importorskip("sklearn")
    script = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "dask_scale.py")
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, script, "--rows", "8192", "--chunk-rows", "2048",
                           "--compare-rows", "0", "--predict-rows", "4096", "--cluster-rows", "0",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert {r["case"].split(" 8192")[0] for r in rows} >= {
        "generate only (sum of blocks)", "fastnn StandardScaler fit", "fastnn PCA(whiten, 16) fit"}
    assert "predict sums agree: True" in proc.stdout
    assert all(r["peak_rss_GiB"] > 0 for r in rows)
