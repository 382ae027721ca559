"""The benchmark harness: its byte models, competitors, timing and reports.

No timing is asserted anywhere: these tests check that ``fastnn bench``
measures the right calls and reports them correctly.
"""
import copy
import importlib
import inspect
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from fastnn.bench import _cases, _report, _targets
from fastnn.bench._machine import measure_sgemm, measure_stream
from fastnn.bench._runner import _environment
from fastnn.bench._timing import measure

# fastnn's own targets (benchmarks/targets.toml of this checkout).
TARGETS = _targets.load(_targets.default_path())


def _check(run):
    """(text, n_pass, n_miss, n_skip) of the project's targets on a run."""
    text, counts = _targets.check(run, TARGETS)
    return text, counts["PASS"], counts["MISS"], counts["SKIP"]


def test_byte_or_flop_model_for_every_kernel():
    names = {k.name for k in _cases.KERNELS}
    assert len(names) == len(_cases.KERNELS)
    assert set(_cases.BYTE_MODEL) | set(_cases.FLOP_MODEL) == names
    assert not set(_cases.BYTE_MODEL) & set(_cases.FLOP_MODEL)
    for name, (passes, peak, what) in _cases.BYTE_MODEL.items():
        assert passes >= 2 and peak in ("triad", "copy") and what, name
    for name, (factor, peak, what) in _cases.FLOP_MODEL.items():
        assert factor >= 2 and peak == "sgemm" and what, name
    # The figures the performance issue states, at float32.
    bm = _cases.BYTE_MODEL
    assert bm["batch_norm_train_fwd"][0] * 4 == 12
    assert (bm["batch_norm_train_fwd_bwd"][0] - bm["batch_norm_train_fwd"][0]) * 4 == 20
    assert bm["dropout_fwd"][0] * 4 == bm["dropout_bwd"][0] * 4 == 8
    assert bm["cross_entropy_fwd_bwd"][0] * 4 == 8
    table = _report.byte_model_table()
    for name in names:
        assert name in table


def test_every_kernel_has_fastnn_numpy_and_a_library_competitor():
    for k in _cases.KERNELS:
        assert {"fastnn", "numpy"} <= set(k.builders), k.name
        assert {"torch", "sklearn"} & set(k.builders), k.name
        assert set(k.builders) <= set(_cases.GROUP_OF), k.name
        assert k.requires and all("." in r for r in k.requires), k.name


def _accepts_out(dotted):
    """A function with ``out=``, or an estimator with scikit-learn's in-place ``copy=``."""
    module, _, attr = dotted.rpartition(".")
    fn = getattr(importlib.import_module("fastnn." + module), attr)
    params = inspect.signature(fn).parameters
    return "out" in params or (inspect.isclass(fn) and "copy" in params)


def test_fastnn_out_exactly_where_every_public_function_accepts_out():
    """Every kernel whose functions take ``out=`` is also timed with reused buffers."""
    with_out = set()
    for k in _cases.KERNELS:
        if k.missing():
            continue
        assert ("fastnn_out" in k.builders) == all(_accepts_out(r) for r in k.requires), k.name
        if "fastnn_out" in k.builders:
            with_out.add(k.name)
    assert _cases.GROUP_OF["fastnn_out"] == "fastnn"  # same worker, never a competitor
    assert "fastnn_out" not in _cases.COMPETITORS
    present = {k.name for k in _cases.KERNELS if not k.missing()}
    assert {"batch_norm_train_fwd", "batch_norm_train_fwd_bwd", "batch_norm_eval_fwd",
            "dropout_fwd", "dropout_bwd", "cross_entropy_fwd_bwd", "hinge_fwd_bwd",
            "mse_fwd_bwd", "l1_loss_fwd_bwd", "l2_penalty", "l1_penalty"} & present <= with_out


@pytest.mark.parametrize("name", [k.name for k in _cases.KERNELS if "fastnn_out" in k.builders])
def test_fastnn_out_reuses_its_buffers_and_computes_the_same(name):
    k = _cases.KERNELS_BY_NAME[name]
    if k.missing():
        pytest.skip("not implemented yet")
    data = k.setup(*k.test_shape, np.float32)
    fresh = k.outputs("fastnn", data)
    run, post = k.build("fastnn_out", data)
    first = post(run())
    arrays = [o for o in first if isinstance(o, np.ndarray) and o.shape == k.test_shape]
    assert arrays, name  # the (N, D) outputs ...
    second = post(run())
    for a, b in zip(first, second):
        if isinstance(a, np.ndarray) and a.shape == k.test_shape:
            assert a is b, name  # ... are the same buffers on every call
    # Fresh outputs of a separate call: the buffers hold this call's results.
    got = tuple(_cases.to_numpy(o) for o in second)
    _cases.compare_outputs(k, data, got, fresh, np.float32)
    if k.compare == "dropout":  # same seed: the same mask as the fresh call
        np.testing.assert_array_equal(got[0] == 0, fresh[0] == 0)


def test_work_counts_bytes_and_flops():
    bn = _cases.KERNELS_BY_NAME["batch_norm_train_fwd"]
    assert bn.work(32768, 1024, 4) == (12 * 32768 * 1024, "B", "triad")
    assert bn.work(10, 10, 8) == (24 * 100, "B", "triad")
    lin = _cases.KERNELS_BY_NAME["linear_fwd"]
    assert lin.work(4096, 1024, 4) == (2 * 4096 * 1024 * 1024, "flop", "sgemm")
    assert lin.label(4096, 1024) == "4096x1024x1024"


def test_sizes_and_selection():
    ce = _cases.KERNELS_BY_NAME["cross_entropy_fwd_bwd"]
    shapes = _cases.shapes_for(ce, _cases.DEFAULT_SIZES)
    for s in [(2, 8), (64, 256), (4096, 1024), (32768, 1024), (4096, 1000), (1024, 32768)]:
        assert s in shapes
    assert _cases.shapes_for(ce, ["small", "64x256", "3x5"]) == [(64, 256), (3, 5)]
    with pytest.raises(ValueError, match="bogus"):
        _cases.parse_shape("bogus")
    with pytest.raises(ValueError, match="N >= 2"):
        _cases.parse_shape("1x5")
    assert [k.name for k in _cases.select(["dropout"])] == ["dropout_fwd", "dropout_bwd"]
    assert [k.name for k in _cases.select(["batch_norm_eval*"])] == ["batch_norm_eval_fwd"]
    with pytest.raises(ValueError, match="no kernel matches"):
        _cases.select(["nothing_like_this"])


def test_missing_kernel_is_reported_not_faked():
    k = copy.copy(_cases.KERNELS_BY_NAME["softmax"])
    k.requires = ("functional.no_such_kernel_xyz",)
    assert k.missing() == ["fastnn.functional.no_such_kernel_xyz"]


@pytest.mark.parametrize("name", [k.name for k in _cases.KERNELS if "torch" in k.builders])
def test_torch_competitor_computes_the_same(torch, name):
    """The torch call the bench times computes what the numpy one does."""
    k = _cases.KERNELS_BY_NAME[name]
    data = k.setup(64, 48, np.float64)
    # 1e-6: torch's renorm_ divides by (norm + 1e-7), the others by norm.
    _cases.compare_outputs(k, data, k.outputs("torch", data), k.outputs("numpy", data),
                           np.float64, rtol=1e-6)


@pytest.mark.parametrize("name", [k.name for k in _cases.KERNELS if "sklearn" in k.builders])
def test_sklearn_competitor_computes_the_same(name):
    pytest.importorskip("sklearn")
    k = _cases.KERNELS_BY_NAME[name]
    data = k.setup(200, 12, np.float64)
    # scikit-learn whitens by 1/sqrt(var) where the others use 1/sqrt(var + eps):
    # with variances >= 1 the difference is below eps = 1e-5, relatively.
    _cases.compare_outputs(k, data, k.outputs("sklearn", data), k.outputs("numpy", data),
                           np.float64, rtol=2e-5)


def test_measure_returns_medians_and_counts_calls():
    calls = []
    t = measure(lambda: calls.append(1), repeat=5, min_sample_s=1e-4, budget_s=0.5)
    assert set(t) >= {"median", "min", "samples", "number", "first_call"}
    assert 1 <= len(t["samples"]) <= 5 and t["number"] >= 1
    assert t["min"] <= t["median"]
    # first call + estimating call + every timed call (a slow estimating
    # call, number == 1, is kept as the first sample)
    if t["number"] > 1:
        assert len(calls) == 2 + t["number"] * len(t["samples"])
    else:
        assert len(calls) == 1 + len(t["samples"])
    slow_calls = []
    slow = measure(lambda: slow_calls.append(time.sleep(0.002)), repeat=3, min_sample_s=1e-4)
    assert slow["number"] == 1 and len(slow["samples"]) == 3 and len(slow_calls) == 4


def test_machine_probes_small():
    s = measure_stream(array_mib=1, repeat=2, budget_s=0.1)
    assert s["array_mib"] == 1 and s["copy_gbs"] > 0 and s["triad_gbs"] > 0
    g = measure_sgemm(n=64, repeat=2, budget_s=0.1)
    assert g["n"] == 64 and g["gflops"] > 0


def _synthetic_run(fastnn_s, other_s, out_s=None):
    """A run where every kernel at every default size took the given times.

    ``out_s``: the out= time (default: the fresh time); None-valued keys are
    left out, as in runs saved before out= timings existed.
    """
    out_s = fastnn_s if out_s is None else out_s
    results = []
    for k in _cases.KERNELS:
        for n, d in _cases.shapes_for(k, _cases.DEFAULT_SIZES):
            work, unit, peak = k.work(n, d, 4)
            times = {"fastnn": {"median": fastnn_s * n * d}}
            if "fastnn_out" in k.builders and out_s is not False:
                times["fastnn_out"] = {"median": out_s * n * d}
            times.update({c: {"median": other_s * n * d} for c in k.builders
                          if c not in ("fastnn", "fastnn_out")})
            results.append({"kernel": k.name, "size": k.label(n, d), "n": n, "d": d,
                            "dtype": "float32", "work": work, "unit": unit, "peak": peak,
                            "times": times, "skipped": None})
    # Peaks slow enough that every kernel reaches 100% of them.
    run = {"machine": {"stream": {"copy_gbs": 1e-9, "triad_gbs": 1e-9, "array_mib": 128},
                       "sgemm": {"gflops": 1e-9, "n": 2048},
                       "workers": {"fastnn": {"numba_threads": 2}}, "cpu_count": 2,
                       "loadavg_start": 0.4, "loadavg_end": 1.1},
           "startup": {"import_s": 0.1, "first_calls_s": 0.2, "total_s": 0.3, "kernels": []},
           "facts": {"dropout_backward_params": ["dy", "p", "seed"]},
           "results": results, "settings": {"repeat": 7}, "versions": {}}
    for r in results:
        _report.derive(r, run)
    return run


def test_check_evaluates_every_target_from_a_default_run():
    fast = _synthetic_run(fastnn_s=1e-15, other_s=1e-9)  # fastnn 1e6 x faster
    text, n_pass, n_miss, n_skip = _check(fast)
    assert n_skip == 0, text  # every target names a kernel and size the default run has
    assert n_miss == 0 and n_pass == len(TARGETS.items), text
    assert text.count("PASS") >= len(TARGETS.items)

    slow = _synthetic_run(fastnn_s=1e-6, other_s=1e-9)   # fastnn 1000 x slower
    slow["startup"]["total_s"] = 5.0
    slow["facts"]["dropout_backward_params"] = ["dy", "mask", "p"]
    slow["machine"]["stream"] = {"copy_gbs": 1e9, "triad_gbs": 1e9, "array_mib": 128}
    slow["machine"]["sgemm"] = {"gflops": 1e9, "n": 2048}
    for r in slow["results"]:
        _report.derive(r, slow)
    text, n_pass, n_miss, n_skip = _check(slow)
    assert n_pass == 0 and n_skip == 0 and n_miss == len(TARGETS.items), text


def test_rates_use_the_out_time_and_ratios_the_fresh_time():
    # Fresh calls 1000 x slower than the competitors, out= calls 1e6 x faster:
    # every "% of peak" target of a kernel with out= passes, every ratio misses.
    run = _synthetic_run(fastnn_s=1e-6, other_s=1e-9, out_s=1e-15)
    run["machine"]["stream"] = {"copy_gbs": 1.0, "triad_gbs": 1.0, "array_mib": 128}
    for r in run["results"]:
        _report.derive(r, run)
        if "fastnn_out" in r["times"]:
            assert r["rate_impl"] == "fastnn_out"
            assert r["rate"] == pytest.approx(r["work"] / r["times"]["fastnn_out"]["median"] / 1e9)
            assert "fastnn_out" not in r["speedup"]
            assert r["speedup"] and all(v == pytest.approx(1e-3) for v in r["speedup"].values())
        else:
            assert r["rate_impl"] == "fastnn"
    text, _, _, _ = _check(run)
    lines = text.splitlines()
    for k in ("batch norm eval fwd", "batch norm train fwd+bwd", "dropout_fwd", "mse_fwd_bwd",
              "l2_penalty"):
        pct = [ln for ln in lines if k in ln and "% of peak (out= time)" in ln]
        ratio = [ln for ln in lines if k in ln and "32768x1024" in ln and "x torch (fresh" in ln]
        assert pct and all(ln.strip().startswith("PASS") for ln in pct), (k, pct)
        assert ratio and all(ln.strip().startswith("MISS") for ln in ratio), (k, ratio)
    # max_norm_ has no out=: its % of peak comes from the (slow) fresh time.
    assert any(ln.strip().startswith("MISS") and "max_norm_" in ln and "% of peak" in ln
               and "out= time" not in ln for ln in lines), text
    ce = next(ln for ln in lines if "G elements/s per core" in ln)
    assert ce.strip().startswith("PASS") and "out=)" in ce, ce

    table = _report.table(run)
    assert "fastnn out=" in table and "reused" in table


def test_runs_saved_without_out_times_still_report():
    """JSON from before fastnn_out: no out= column, rates from the fresh time."""
    old = _synthetic_run(1e-12, 1e-9, out_s=False)
    for r in old["results"]:  # as saved then: no rate_impl key
        r.pop("rate_impl")
        assert "fastnn_out" not in r["times"]
    table = _report.table(old)
    assert "fastnn out=" not in table and "GB/s" in table
    text, n_pass, n_miss, n_skip = _check(old)
    assert n_skip == 0 and "(fresh output: no out= time)" in text
    new = _synthetic_run(2e-12, 1e-9, out_s=1e-12)
    cmp = _report.compare(old, new)
    assert "0.50x" in cmp
    row = next(ln for ln in cmp.splitlines() if ln.startswith("mse_fwd_bwd"))
    assert " - " in row  # no old out= time


def test_check_skips_what_was_not_measured():
    run = _synthetic_run(1e-15, 1e-9)
    run["results"] = [r for r in run["results"] if r["kernel"] != "dropout_fwd"]
    run["startup"] = None
    text, _, _, n_skip = _check(run)
    assert n_skip >= 5
    assert "SKIP  dropout_fwd" in text


def test_project_targets_name_every_kernel_at_64x256_and_2x8():
    """A kernel added to fastnn bench gets its small-size and call-overhead targets."""
    def named(kind, shape):
        return {t["kernel"] for t in TARGETS.items if t["kind"] == kind and t["shape"] == shape}
    names = {k.name for k in _cases.KERNELS}
    assert named("ratio", [64, 256]) == names
    assert named("overhead", list(_cases.SIZES["tiny"][0])) == names
    for t in TARGETS.items:
        if t["kind"] == "ratio" and t["shape"] == [64, 256]:
            k = _cases.KERNELS_BY_NAME[t["kernel"]]
            assert t["competitor"] == ("torch" if "torch" in k.builders else "sklearn"), t


def _write_targets(tmp_path, body):
    path = tmp_path / "targets.toml"
    path.write_text(body)
    return path


_GOOD = ('{kind = "ratio", text = "t", kernel = "softmax", shape = [64, 256], '
         'competitor = "torch", min = 3}')


@pytest.mark.parametrize("entry, message", [
    (_GOOD.replace('"ratio"', '"speed"'), "unknown kind 'speed'"),
    (_GOOD.replace("min = 3", "minimum = 3"), "unknown ['minimum']"),
    (_GOOD.replace(', competitor = "torch"', ""), "missing ['competitor']"),
    (_GOOD.replace('"softmax"', '"sofmax"'), "bad kernel 'sofmax'"),
    (_GOOD.replace('"softmax"', '["softmax"]'), "bad kernel ['softmax']"),
    (_GOOD.replace("[64, 256]", "[64, 0]"), "bad shape [64, 0]"),
    (_GOOD.replace("[64, 256]", "[64]"), "bad shape [64]"),
    (_GOOD.replace("min = 3", "min = -1"), "bad min -1"),
    (_GOOD.replace("min = 3", "min = nan"), "bad min nan"),
    (_GOOD.replace("min = 3", 'min = "3"'), "bad min '3'"),
    (_GOOD.replace("min = 3", "min = true"), "bad min True"),
    (_GOOD.replace('"torch"', '"sklearn"'), "not measured against 'sklearn'"),
    (_GOOD.replace('text = "t"', 'text = ""'), "bad text ''"),
    (_GOOD.replace("}", ', dtype = "float16"}'), "bad dtype 'float16'"),
    ('{kind = "ratio_sum", text = "t", kernels = ["linear_fwd", "nope"], shape = [2, 8], '
     'competitor = "torch", min = 1}', "bad kernels"),
    ('"startup"', "expected a table, got 'startup'"),
])
def test_a_bad_target_is_refused_naming_it(tmp_path, entry, message):
    path = _write_targets(tmp_path, f"targets = [\n  {_GOOD},\n  {entry},\n]\n")
    with pytest.raises(ValueError, match="target 2") as exc:
        _targets.load(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize("body, message", [
    ("targets = [", "not a valid TOML file"),
    ("targets = []", "non-empty list 'targets'"),
    ('title = "x"', "non-empty list 'targets'"),
    (f"title = 3\ntargets = [{_GOOD}]", "title must be a string"),
    (f"target = [{_GOOD}]", "unknown top-level keys ['target']"),
])
def test_a_bad_targets_file_is_refused(tmp_path, body, message):
    with pytest.raises(ValueError, match=r"targets\.toml") as exc:
        _targets.load(_write_targets(tmp_path, body))
    assert message in str(exc.value)


def test_a_user_targets_file_is_judged_with_its_own_title_and_dtype(tmp_path):
    path = _write_targets(tmp_path, f"""title = "my targets"
targets = [
  {_GOOD},
  {_GOOD.replace('text = "t"', 'text = "t64"').replace("}", ', dtype = "float64"}')},
  {{kind = "time_ratio", text = "pca", kernel = "pca_whiten_fit_transform", shape = [64, 256],
    competitor = "sklearn", max = 2}},
]
""".replace(",\n    competitor", ", competitor"))
    mine = _targets.load(path)
    run = _synthetic_run(fastnn_s=1e-12, other_s=1e-9)
    text, counts = _targets.check(run, mine)
    lines = text.splitlines()
    assert lines[0] == "my targets:"
    assert lines[1].split()[:3] == ["PASS", "t:", ">="] and lines[1].endswith("1000.00x")
    assert lines[2].split()[0] == "SKIP" and "(not measured in this run)" in lines[2]
    assert lines[3].split()[0] == "PASS" and "<= 2x sklearn" in lines[3]
    assert counts == {"PASS": 2, "MISS": 0, "UNSTABLE": 0, "SKIP": 1}


def test_table_and_compare():
    run = _synthetic_run(1e-12, 1e-9)
    run["results"][0]["times"]["torch"] = {"error": "RuntimeError: boom"}
    run["results"][1] = dict(run["results"][1], skipped="not implemented yet: fastnn.functional.x")
    text = _report.table(run)
    assert "RuntimeError: boom" in text and "skipped: not implemented yet" in text
    for k in _cases.KERNELS:
        assert k.name in text
    assert "GB/s" in text and "% triad" in text and "% copy" in text and "% sgemm" in text

    slower = _synthetic_run(2e-12, 1e-9)
    cmp = _report.compare(run, slower)
    assert "0.50x" in cmp and "batch_norm_eval_fwd" in cmp


def test_speedup_is_competitor_over_fastnn():
    row = {"kernel": "softmax", "unit": "B", "peak": "triad", "work": 8e9,
           "times": {"fastnn": {"median": 1.0}, "torch": {"median": 3.0},
                     "numpy": {"error": "x"}}}
    _report.derive(row, {"machine": {"stream": {"triad_gbs": 16.0}}})
    assert row["speedup"] == {"torch": 3.0}
    assert row["rate"] == pytest.approx(8.0) and row["pct_peak"] == pytest.approx(50.0)
    assert row["rate_impl"] == "fastnn"
    # With an out= time: the rate from it, the speed-ups still from the fresh time.
    row["times"]["fastnn_out"] = {"median": 0.5}
    _report.derive(row, {"machine": {"stream": {"triad_gbs": 16.0}}})
    assert row["speedup"] == {"torch": 3.0} and row["rate_impl"] == "fastnn_out"
    assert row["rate"] == pytest.approx(16.0) and row["pct_peak"] == pytest.approx(100.0)
    # A failed out= call falls back to the fresh time.
    row["times"]["fastnn_out"] = {"error": "TypeError"}
    _report.derive(row, {"machine": {"stream": {"triad_gbs": 16.0}}})
    assert row["rate_impl"] == "fastnn" and row["rate"] == pytest.approx(8.0)


def test_asv_sizes_can_be_restricted_by_the_environment(monkeypatch):
    """FASTNN_ASV_SIZES (the CI smoke run) replaces every class's size list."""
    import benchmarks.asv_bench.bench_kernels as bk
    try:
        monkeypatch.setenv("FASTNN_ASV_SIZES", "64x256, 8x16")
        bk = importlib.reload(bk)
        for cls in vars(bk).values():
            if isinstance(cls, type) and issubclass(cls, bk._KernelBenchmark) and cls.kernel:
                assert cls.params[0] == ["64x256", "8x16"], cls
        monkeypatch.setenv("FASTNN_ASV_SIZES", "big")
        with pytest.raises(ValueError, match="big"):
            importlib.reload(bk)
        monkeypatch.delenv("FASTNN_ASV_SIZES")
        bk = importlib.reload(bk)
        assert "4096x1024" in bk.MSE.params[0]
        assert "4096x1000" in bk.CrossEntropy.params[0]
        kernels = {cls.kernel for cls in vars(bk).values()
                   if isinstance(cls, type) and issubclass(cls, bk._KernelBenchmark)}
        assert kernels - {None} == {k.name for k in _cases.KERNELS}  # every kernel covered
    finally:
        monkeypatch.delenv("FASTNN_ASV_SIZES", raising=False)
        importlib.reload(bk)


def test_dram_rows_take_their_peak_from_the_paired_probe():
    # DRAM-sized memory-bound rows carry rounds of (kernel call, STREAM copy,
    # STREAM triad) timed back to back; their % of peak is the median of the
    # per-round ratios, other rows divide by the run's first probe.
    run = _synthetic_run(fastnn_s=1e-9, other_s=1e-9)
    run["machine"]["stream"] = {"copy_gbs": 10.0, "triad_gbs": 10.0, "array_mib": 128}
    row = next(r for r in run["results"] if r["kernel"] == "mse_fwd_bwd")
    _report.derive(row, run)
    assert row["pct_peak"] == pytest.approx(10.0 * row["rate"])
    w = row["work"]
    # rounds at 50%, 100% (the machine slowed down for both), 25% of triad
    row["paired_stream"] = {"kernel": [2.0, 4.0, 4.0], "triad": [1.0, 4.0, 1.0],
                            "copy": [1.0, 1.0, 1.0], "triad_bytes": w, "copy_bytes": w}
    _report.derive(row, run)
    assert row["pct_peak"] == pytest.approx(50.0)


def test_the_runner_pairs_dram_sized_cases_with_stream(monkeypatch):
    from fastnn.bench import _runner
    monkeypatch.setattr(_runner, "_SIDE_BY_SIDE_BYTES", 0)   # every case counts as DRAM-sized
    run = _runner.run(["l2_penalty", "linear_fwd"], sizes=["small"], against=("numpy",),
                      quick=True, progress=False, repeat=3)
    by_kernel = {r["kernel"]: r for r in run["results"]}
    paired = by_kernel["l2_penalty"]["paired_stream"]
    assert paired["impl"] == "fastnn_out"
    assert len(paired["kernel"]) == len(paired["triad"]) == len(paired["copy"]) == 3
    assert all(t > 0 for t in paired["kernel"] + paired["triad"] + paired["copy"])
    assert 0 < by_kernel["l2_penalty"]["pct_peak"] < 1e4
    assert "paired_stream" not in by_kernel["linear_fwd"]   # compute-bound: no pairing


def test_fastnn_sets_its_thread_pool_defaults_only_when_the_user_set_none():
    code = ("import fastnn._config as c, os; "
            "print(c.SET_BY_FASTNN, os.environ.get('GOMP_SPINCOUNT'))")
    for user, expected in (({}, "('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT') 3000"),
                           ({"OMP_WAIT_POLICY": "ACTIVE"}, "() None"),
                           ({"GOMP_SPINCOUNT": "10"}, "() 10")):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        out = subprocess.run([sys.executable, "-c", code], env=dict(env, **user),
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == expected, user


def test_competitor_workers_run_without_fastnn_thread_pool_defaults():
    from fastnn._config import SET_BY_FASTNN, THREAD_ENV
    from fastnn.bench._runner import Worker
    user = {name: (None if name in SET_BY_FASTNN else os.environ.get(name)) for name in THREAD_ENV}
    ours = {k: os.environ.get(k) for k in THREAD_ENV}
    for group, expected in (("numpy", user), ("fastnn", ours)):
        w = Worker(group, _environment(group))
        try:
            assert w.info["thread_env"] == expected, group
        finally:
            w.close()


def _timing(samples):
    return {"median": float(np.median(samples)), "samples": list(samples)}


def test_a_row_with_a_slow_competitor_burst_is_measured_again():
    # round 1: a competitor disturbed for part of its samples (40 ms among
    # 0.1 ms ones, as one busy run printed "1702x torch"); round 2 quiet
    from fastnn.bench._stability import SPREAD_BOUND, measure_stably
    rounds = iter([
        {"fastnn": _timing([2e-5] * 7),
         "torch": _timing([1e-4, 4e-2, 4e-2, 1e-4, 4e-2, 1e-4, 4e-2])},
        {"fastnn": _timing([2e-5] * 7), "torch": _timing([1e-4, 1.1e-4, 1e-4, 1.05e-4, 1e-4, 1e-4,
                                                           1e-4])},
    ])
    times, extra, stability = measure_stably(lambda: (next(rounds), "probe"))
    assert stability["rounds"] == 2 and not stability["unstable"]
    assert stability["spreads"][0] > SPREAD_BOUND >= stability["spread"]
    assert times["torch"]["median"] == pytest.approx(1e-4) and extra == "probe"


def test_a_row_that_stays_noisy_is_unstable_and_never_pass_or_miss():
    from fastnn.bench._stability import MAX_ROUNDS, measure_stably
    calls = []

    def noisy():
        calls.append(1)
        return {"fastnn": _timing([1e-5] * 7), "torch": _timing([1e-4, 4e-2] * 3 + [1e-4])}, None
    times, _, stability = measure_stably(noisy)
    assert len(calls) == MAX_ROUNDS and stability["unstable"]

    run = _synthetic_run(fastnn_s=1e-15, other_s=1e-9)      # every target would PASS
    bad = _find_row(run, "batch_norm_train_fwd_bwd", (32768, 1024))
    bad["times"] = dict(bad["times"], torch=times["torch"])
    bad["stability"] = stability
    text, n_pass, n_miss, n_skip = _check(run)
    lines = [ln for ln in text.splitlines() if "batch norm train fwd+bwd 32768x1024" in ln]
    assert lines and all(ln.strip().startswith("UNSTABLE") for ln in lines), lines
    assert n_miss == 0 and n_pass == len(TARGETS.items) - len(lines)
    assert "UNSTABLE" in _report.table(run)
    assert "load average (1 min): start" in _report.header(run)


def _find_row(run, kernel, shape):
    return next(r for r in run["results"] if r["kernel"] == kernel and (r["n"], r["d"]) == shape)


def test_confirm_catches_a_competitor_slowed_in_every_sample():
    # every sample of torch slowed alike in one round: its spread stays 1, so
    # only the second, interleaved round shows the ratio moving
    from fastnn.bench._stability import measure_stably
    rounds = iter([
        {"fastnn": _timing([2e-5] * 7), "torch": _timing([4e-2] * 7)},
        {"fastnn": _timing([2e-5] * 7), "torch": _timing([1e-4] * 7)},
    ])
    _, _, plain = measure_stably(lambda: ({"fastnn": _timing([2e-5] * 7),
                                           "torch": _timing([4e-2] * 7)}, None))
    assert not plain["unstable"] and plain["rounds"] == 1      # what spread alone sees
    _, _, stability = measure_stably(lambda: (next(rounds), None), confirm=True)
    assert stability["rounds"] == 2 and stability["moved"] == pytest.approx(400)
    assert stability["unstable"]
    steady = iter([{"fastnn": _timing([2e-5] * 7), "torch": _timing([1e-4] * 7)}] * 2)
    _, _, ok = measure_stably(lambda: (next(steady), None), confirm=True)
    assert not ok["unstable"] and ok["moved"] == 1.0


def test_progress_total_counts_each_row_once_however_often_it_is_remeasured(monkeypatch):
    # The bar overshot its total (232 steps of 219) when rows were measured again.
    from fastnn.bench import _runner

    class Bar:
        def __init__(self, total):
            self.total, self.steps = total, 0

        def update(self, n=1):
            self.steps += n

        def set_description(self, text):
            pass

        def close(self):
            pass

    bars = []
    monkeypatch.setattr(_runner, "_progress", lambda total, enabled: bars.append(Bar(total))
                        or bars[-1])
    # a bound no timing meets: every row takes the maximum number of rounds
    real = _runner.measure_stably
    monkeypatch.setattr(_runner, "measure_stably",
                        lambda *a, **k: real(*a, **dict(k, bound=0.0, max_rounds=3)))
    run = _runner.run(["l2_penalty", "relu"], sizes=["tiny"], against=("numpy",), quick=True,
                      progress=True, repeat=1)
    assert all(r["stability"]["rounds"] == 3 for r in run["results"] if not r["skipped"])
    assert bars[0].steps == bars[0].total


def test_machine_class_separates_cpu_generations_and_core_counts():
    from fastnn.bench._results import machine_class
    zen3 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "1",
            "model name": "AMD EPYC", "flags": "fpu avx avx2 fma"}
    zen4 = dict(zen3, model="17", flags="fpu avx2 avx512f")
    assert machine_class(zen3, cores=2) == "amd-epyc-zen3-avx2-2c"
    assert machine_class(zen4, cores=2) == "amd-epyc-zen4-avx512-2c"
    assert machine_class(zen3, cores=16) == "amd-epyc-zen3-avx2-16c"
    intel = {"vendor_id": "GenuineIntel", "cpu family": "6", "model": "143",
             "model name": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
             "flags": "avx2 avx512f"}
    assert machine_class(intel, cores=4) == "intel-xeon-platinum-8480-avx512-4c"
    assert machine_class({}, cores=1).endswith("-1c")


def test_results_go_to_one_folder_per_machine_class(tmp_path, capsys):
    import json as _json

    from fastnn.bench import RESULTS_FOLDER, _results, build_parser, save_json
    path = _results.results_path("kernels", machine="m-2c", root=tmp_path)
    assert path.parent == tmp_path / "m-2c" and path.name.startswith("kernels-")
    assert path.name.endswith(f"-{_results.commit_id()}.json")
    # --json alone means the results folder; --json FILE that file
    assert build_parser().parse_args(["--json"]).json is RESULTS_FOLDER
    assert build_parser().parse_args(["--json", "x.json"]).json == "x.json"
    written = save_json({"a": 1}, str(tmp_path / "x.json"), "kernels")
    assert _json.loads(open(written).read()) == {"a": 1}
    assert _results.results_root() is not None   # the tests run from a checkout


def test_before_after_calls_a_change_only_beyond_the_noise_and_the_floor():
    from fastnn.bench._stability import before_after
    assert before_after([1.0, 1.01], [1.2, 1.21])["verdict"] == "slower"
    assert before_after([1.0, 1.01], [1.05, 1.06])["verdict"] == "same"      # below the 1.10 floor
    assert before_after([1.0, 1.5], [1.3, 1.31])["verdict"] == "same"        # the base disagrees
    faster = before_after([2.0, 2.02], [1.0, 1.01])
    assert faster["verdict"] == "faster" and faster["ratio"] == pytest.approx(0.5)
    for bad in (([], [1.0]), ([1.0], [0.0])):
        with pytest.raises(ValueError, match="positive times"):
            before_after(*bad)
