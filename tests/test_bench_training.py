"""``fastnn bench --training``: a smoke run at a tiny size, and its report."""
import numpy as np
import pytest

from fastnn.bench import _training as T


def test_worker_trains_every_library_on_the_tiny_synthetic_case():
    case = "synthetic 4-32-16-4 b32 (MSE)"
    libs = T.available(T.LIBS)
    results = {lib: T.worker(lib, case, 2, quick=True) for lib in libs}
    for lib, r in results.items():
        assert r["epoch_ms"] > 0 and r["first_epoch_s"] > 0 and np.isfinite(r["score"]), lib
        assert r["score_name"] == "val MSE"
    assert results["fastnn"]["engine_step_us"] > 0
    # the compiled engine and the layer path train the same steps
    assert results["fastnn"]["score"] == pytest.approx(results["layers"]["score"], rel=1e-4)


def test_a_fresh_process_speaks_the_protocol_and_the_report_reads_it():
    case = "synthetic 4-32-16-4 b32 (MSE)"
    res = T._spawn("fastnn", case, 1, quick=True)
    result = {"rounds": 1, "quick": True, "results": {case: {"fastnn": res}}}
    text = T.table(result)
    assert case in text and "val MSE" in text
    report = T.check(result)
    assert ("PASS" in report or "MISS" in report) and "SKIP" in report


def test_bad_case_fails_loudly():
    with pytest.raises(RuntimeError, match="no such case"):
        T._spawn("fastnn", "no such case", 1, quick=True)
