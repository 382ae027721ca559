"""engine.one_blas_thread: one BLAS thread while any compiled fit runs, in any thread; the
process's BLAS threads back as they were once the last one ends."""
import threading

import numpy as np
import pytest

from fastnn import engine, nn, optim
from fastnn.train import fit, fit_many

threadpoolctl = pytest.importorskip("threadpoolctl")
pytest.importorskip("scipy")

WAIT = 120   # seconds: a guard against a hang, not a timing


def _blas_threads():
    engine._blas_pools()     # scipy's BLAS (the engine's) loaded
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def _fit(callback, **kwargs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    model = nn.Sequential(nn.Linear(4, 8, activation="relu", rng=0, dtype=np.float64),
                          nn.Linear(8, 2, rng=1, dtype=np.float64))
    hist = fit(model, X, (X[:, 0] > 0).astype(np.int64), epochs=2, batch_size=16, rng=0,
               progress=False, engine="compiled", callbacks=[callback], **kwargs)
    assert hist["engine"] == "compiled"


def _in_thread(target, *args):
    """Start ``target(*args)`` in a thread; returns (thread, list of what it raised)."""
    errors = []

    def run():
        try:
            target(*args)
        except BaseException as exc:    # reported by the test
            errors.append(exc)
    t = threading.Thread(target=run)
    t.start()
    return t, errors


def test_overlapping_fits_keep_one_thread_until_the_last_ends_then_restore_once():
    """Fit A enters, fit B enters, A leaves while B runs, then B leaves."""
    before = _blas_threads()
    if max(before) < 2:
        pytest.skip("the BLAS already runs one thread here: nothing to restore")
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen_by_b = []

    def a_epoch(history):
        if history["epoch"][-1] == 1:
            a_in.set()
            assert b_in.wait(WAIT)

    def b_epoch(history):
        if history["epoch"][-1] == 1:
            b_in.set()
            assert a_out.wait(WAIT)
            seen_by_b.append(_blas_threads())

    def b_after_a():
        assert a_in.wait(WAIT)
        _fit(b_epoch)

    ta, errors_a = _in_thread(_fit, a_epoch)
    tb, errors_b = _in_thread(b_after_a)
    ta.join(WAIT)
    a_out.set()
    tb.join(WAIT)
    assert not errors_a and not errors_b, errors_a + errors_b
    assert seen_by_b == [[1] * len(before)]     # A ending did not give B the thread team
    assert _blas_threads() == before            # and B ending did not leave one thread


def test_the_guard_holds_in_a_worker_thread_while_the_main_thread_holds_a_limit():
    before = _blas_threads()
    seen = []
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        limited = _blas_threads()
        t, errors = _in_thread(_fit, lambda history: seen.append(_blas_threads()))
        t.join(WAIT)
        assert not errors, errors
        assert seen == [[1] * len(before)] * 2
        assert _blas_threads() == limited
        # fit_many from a worker thread: its pool and every fit in it
        many = []

        def sweep():
            models = [nn.Sequential(nn.Linear(3, 2, rng=s, dtype=np.float64)) for s in range(2)]
            X = np.random.default_rng(0).standard_normal((32, 3))
            fit_many(models, X, np.arange(32) % 2, [optim.SGD(m.parameters(), lr=0.1)
                                                     for m in models],
                     epochs=2, callbacks=[lambda history: many.append(_blas_threads())])
        t, errors = _in_thread(sweep)
        t.join(WAIT)
        assert not errors, errors
        assert many == [[1] * len(before)] * 4
        assert _blas_threads() == limited
    assert _blas_threads() == before
