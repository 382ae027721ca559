"""The ``fastnn`` command: info, bench (quick), lesson wiring."""
import json
import subprocess
import sys
import types

import pytest

from fastnn.__main__ import main

# A quick bench over a few kernels covers every worker group (fastnn, numpy,
# torch, sklearn, the STREAM and SGEMM probes); every kernel's definitions
# are checked in-process by tests/test_bench.py and benchmarks/.
QUICK_KERNELS = "dropout_fwd,l2_penalty,standard_scaler_fit_transform"


def _fastnn(*args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    rc, out, err = _fastnn("bench", "--quick", "--no-progress", "--kernels", QUICK_KERNELS,
                           "--json", str(path))
    assert rc == 0, err
    return path, out


def test_info_runs_and_reports_what_a_bug_report_needs():
    rc, out, err = _fastnn("info")
    assert rc == 0, err
    for key in ("numpy", "numba", "llvmlite", "threading_layer", "num_threads", "cache_dir",
                "cuda", "usable", "blas", "after_fork"):
        assert key in out, key
    rc, out, err = _fastnn("info", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["numba"]["num_threads"] >= 1
    assert isinstance(info["cuda"]["usable"], bool)


def test_bench_quick_prints_a_table_and_saves_json(quick_run):
    path, out = quick_run
    assert "STREAM" in out and "SGEMM" in out and "QUICK" in out
    assert "kernel" in out and "fastnn" in out and "% peak" in out
    assert "fastnn out=" in out and "reused" in out
    run = json.loads(path.read_text())
    assert {"schema", "created", "quick", "settings", "versions", "machine", "results",
            "facts"} <= set(run)
    assert run["quick"] is True
    assert {"copy_gbs", "triad_gbs", "array_mib"} <= set(run["machine"]["stream"])
    assert run["machine"]["sgemm"]["gflops"] > 0
    kernels = {r["kernel"] for r in run["results"]}
    assert kernels == set(QUICK_KERNELS.split(","))
    for r in run["results"]:
        assert {"kernel", "size", "n", "d", "dtype", "work", "unit", "peak", "times",
                "skipped", "speedup", "rate", "pct_peak"} <= set(r)
        assert r["size"] in ("2x8", "64x256")
        assert r["kernel"] in out
        if not r["skipped"]:
            t = r["times"]["fastnn"]
            assert "error" not in t, t
            assert {"median", "min", "samples", "number", "first_call"} <= set(t)
            assert t["median"] > 0 and "numpy" in r["times"]
            # Kernels with out= are timed with a reused buffer too (same
            # worker); rates come from that time, speed-ups from the fresh one.
            # (StandardScaler's "out=" is copy=False on a working copy.)
            u = r["times"]["fastnn_out"]
            assert "error" not in u, u
            assert u["median"] > 0 and r["rate_impl"] == "fastnn_out"
            assert r["rate"] == pytest.approx(r["work"] / u["median"] / 1e9)
            assert set(r["speedup"]) <= {"numpy", "torch", "sklearn"}
    # each group ran in its own process
    pids = {g: w["pid"] for g, w in run["machine"]["workers"].items()}
    assert len(set(pids.values())) == len(pids) >= 4


def test_bench_compare_and_check_from_saved_runs(quick_run):
    path, _ = quick_run
    rc, out, err = _fastnn("bench", "--load", str(path), "--compare", str(path), "--check")
    assert rc == 0, err
    assert "compare:" in out and "1.00x" in out
    lines = [ln.strip() for ln in out.splitlines()]
    status = [ln.split()[0] for ln in lines if ln.startswith(("PASS", "MISS", "SKIP", "UNSTABLE"))]
    assert len(status) >= 40
    # the 64 x 256 ratio targets of the measured kernels were evaluated (a quick
    # run's short samples may be judged UNSTABLE: evaluated, not a result)
    measured = [ln for ln in lines if ln.startswith(("PASS", "MISS", "UNSTABLE")) and "64x256" in ln]
    assert any("dropout_fwd" in ln for ln in measured), out
    assert any("standard_scaler_fit_transform" in ln and "sklearn" in ln for ln in measured)


def test_bench_loads_and_compares_runs_saved_before_out_timings(quick_run, tmp_path):
    path, _ = quick_run
    run = json.loads(path.read_text())
    for r in run["results"]:  # what a run saved before fastnn_out looks like
        r["times"].pop("fastnn_out", None)
        r.pop("rate_impl", None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(run))
    rc, out, err = _fastnn("bench", "--load", str(old), "--check")
    assert rc == 0, err
    assert "fastnn out=" not in out.split("targets")[0] and "% peak" in out
    rc, out, err = _fastnn("bench", "--load", str(path), "--compare", str(old))
    assert rc == 0, err
    assert "compare:" in out and "out= old" in out and "fastnn out=" in out


def test_bench_list_shows_every_kernel_with_its_byte_model(capsys):
    from fastnn.bench import KERNELS
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for k in KERNELS:
        assert k.name in out
    assert "12 B/elt" in out and "32 B/elt" in out and "8 B/elt" in out
    assert "reused output buffer" in out and "fresh outputs on both sides" in out
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    assert "out=" in helptext and "fresh outputs on both sides" in helptext


@pytest.mark.parametrize("args, message", [
    (["bench", "--sizes", "bogus"], "bogus"),
    (["bench", "--kernels", "no_such_kernel"], "no kernel matches"),
    (["bench", "--dtypes", "float16"], "float16"),
])
def test_bench_bad_arguments(capsys, args, message):
    assert main(args + ["--no-progress", "--no-startup"]) == 2
    assert message in capsys.readouterr().err


def test_usage_and_unknown_command(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_lesson_is_wired_to_fastnn_lesson_main(monkeypatch):
    seen = []
    fake = types.ModuleType("fastnn.lesson")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fastnn.lesson", fake)
    assert main(["lesson", "--quick", "--out", "/tmp/x", "--only", "init"]) == 0
    assert seen == [["--quick", "--out", "/tmp/x", "--only", "init"]]


def test_lesson_absent_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastnn.lesson", None)
    assert main(["lesson"]) == 2
    assert "not available" in capsys.readouterr().err
