"""Run the benchmark: one worker process per competitor, interleaved per case.

Method (documented in ``fastnn bench --help`` and the README):

* Every implementation group runs in its own process (``_worker``):
  ``fastnn`` (numba's pool, plus the BLAS fastnn's linear layer calls),
  ``numpy`` (OpenBLAS), ``torch`` (torch's OpenMP pool), ``sklearn`` (scipy's
  OpenBLAS), and the machine probes ``stream`` (numba) and ``sgemm``
  (numpy's BLAS).  Thread pools of different libraries never share a
  process, so none spin-waits against another inside one process.  The
  workers of numba code (:data:`NUMBA_GROUPS`) run with fastnn's thread-pool
  settings (``fastnn._config.THREAD_ENV``); the others without the ones
  fastnn set (unless the user set them), so torch's OpenMP pool runs with
  torch's defaults.
* Workers stay alive and the cases are interleaved: for each (kernel, size,
  dtype) every group runs in turn, so the ratios of one row are measured
  seconds apart, not minutes.  An idle worker is blocked reading its stdin;
  a pause of 0.15 s between groups lets the previous group's OpenBLAS and
  OpenMP threads stop spinning before the next group starts timing.
* Each time is a median over ``repeat`` samples after warm-up calls (the
  first call, which compiles or loads the numba cache, is never counted).
* A row whose samples disagree (max/min of a timing's samples above
  ``_stability.SPREAD_BOUND``) is measured again, up to
  ``_stability.MAX_ROUNDS`` rounds; if every round disagrees the row is
  marked unstable and ``--check`` reports its targets as UNSTABLE.
"""
import datetime
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from . import _cases
from ._results import machine_class
from ._stability import MAX_ROUNDS, measure_stably

# Marks the protocol lines a worker writes on stdout (see ``_worker``).
TAG = "@@fastnn-bench@@ "
GROUP_ORDER = ("fastnn", "numpy", "torch", "sklearn")
# The workers that run numba code, with fastnn's thread-pool settings.
NUMBA_GROUPS = ("fastnn", "stream")


class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process speaking the line protocol of ``_worker``."""

    def __init__(self, group, env=None):
        self.group = group
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastnn.bench._worker", group],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        hello = self._read()
        if not hello.get("ok"):
            self.close()
            raise WorkerError(hello.get("error", "worker failed to start"))
        self.info = hello.get("info", {})

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                raise WorkerError(f"{self.group} worker exited with status {rc}")
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
            sys.stderr.write(line)

    def request(self, obj):
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"{self.group} worker is gone: {exc}") from None
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def _environment(group):
    """The environment of ``group``'s worker (None: this process's own).

    A competitor's worker gets the user's environment, without the
    thread-pool variables fastnn's import added; the worker, which imports
    fastnn too, removes its own additions again before torch loads
    (``_worker.main``).
    """
    if group in NUMBA_GROUPS:
        return None
    from fastnn._config import SET_BY_FASTNN
    return {k: v for k, v in os.environ.items() if k not in SET_BY_FASTNN}


class Pool:
    """Lazily started workers; a worker that dies is restarted for the next case."""

    def __init__(self):
        self.workers = {}
        self.unavailable = {}
        self.infos = {}

    def get(self, group):
        if group in self.unavailable:
            return None
        w = self.workers.get(group)
        if w is None or w.proc.poll() is not None:
            try:
                w = self.workers[group] = Worker(group, _environment(group))
                self.infos[group] = w.info
            except WorkerError as exc:
                self.unavailable[group] = str(exc)
                return None
        return w

    def request(self, group, obj):
        w = self.get(group)
        if w is None:
            return {"error": f"{group} unavailable: {self.unavailable[group]}"}
        try:
            return w.request(obj)
        except WorkerError as exc:
            self.workers.pop(group, None)
            return {"error": str(exc)}

    def close_group(self, group):
        """Stop a worker that has no more work (its memory and threads go)."""
        w = self.workers.pop(group, None)
        if w is not None:
            try:
                self.infos[group] = w.request({"op": "info"}).get("info", self.infos.get(group))
            except Exception:
                pass
            w.close()

    def close(self):
        for group, w in list(self.workers.items()):
            try:
                self.infos[group] = w.request({"op": "info"}).get("info", self.infos.get(group))
            except Exception:
                pass
            w.close()
        self.workers.clear()


def _progress(total, enabled):
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, unit="step", file=sys.stderr, leave=False,
                        dynamic_ncols=True)
        except ImportError:
            pass

    class _Plain:  # fallback without tqdm: a line per kernel
        def __init__(self):
            self.last = None

        def update(self, n=1):
            pass

        def set_description(self, text):
            head = text.split(" ")[0]
            if enabled and head != self.last:
                print(f"  running {head} ...", file=sys.stderr, flush=True)
                self.last = head

        def close(self):
            pass
    return _Plain()


def measure_startup():
    """Import + first call of every present kernel, in fresh processes.

    The first process fills numba's on-disk cache if it is cold; the second
    one is the measurement (compile-cache hits), as the target states.
    """
    code = (
        "import time, json; t0 = time.perf_counter()\n"
        "import fastnn.functional, fastnn.preprocessing\n"
        "t1 = time.perf_counter()\n"
        "from fastnn.bench._cases import first_calls\n"
        "names = first_calls()\n"
        "t2 = time.perf_counter()\n"
        "print('" + TAG + "' + json.dumps({'import_s': t1 - t0, 'first_calls_s': t2 - t1,"
        " 'total_s': t2 - t0, 'kernels': names}))\n"
    )
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(TAG)]
        if proc.returncode != 0 or not lines:
            return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        rec = json.loads(lines[-1][len(TAG):])
        rec["process_wall_s"] = wall
        runs.append(rec)
    return {"first_process": runs[0], **runs[1]}


def _versions():
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("fastnn", "numpy", "numba", "llvmlite", "torch", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# Cases whose input array is at least this large (DRAM-sized: over twice
# the 32 MiB L3) are also timed alternately with STREAM probes (see run).
_SIDE_BY_SIDE_BYTES = 64 << 20


def _timing(quick, repeat, stream_mib, sgemm_n):
    """(timing settings, stream_mib, sgemm_n, pause between groups) for a run."""
    if quick:
        timing = dict(repeat=repeat, min_sample_s=2e-4, budget_s=0.05, min_repeat=1)
        return timing, stream_mib or 4, sgemm_n or 256, 0.0
    timing = dict(repeat=repeat, min_sample_s=2e-3, budget_s=2.0, min_repeat=3)
    # OpenBLAS threads spin (sched_yield loop) for up to ~2**28 cycles
    # (~0.1 s) after a call before they sleep, OpenMP threads for less:
    # wait that out before the next group's process starts timing.
    return timing, stream_mib or 128, sgemm_n or 2048, 0.15


def _groups(against):
    """The worker groups to run: fastnn, then the requested competitors that import."""
    groups = ["fastnn"] + [g for g in GROUP_ORDER[1:] if g in against]
    for g in ("torch", "sklearn"):
        if g in groups and importlib.util.find_spec(g) is None:
            groups.remove(g)
    return groups


def _plan(kernels, sizes, dtypes, groups):
    """Every case, planned first so the progress bar knows the total:
    [(kernel, n, d, dtype name, missing implementations, {group: impl names})]."""
    plan = []
    for k in kernels:
        missing = k.missing()
        for n, d in _cases.shapes_for(k, sizes):
            for dt in dtypes:
                impls = {g: [i for i in k.builders if _cases.GROUP_OF[i] == g] for g in groups}
                impls = {g: v for g, v in impls.items() if v}
                plan.append((k, n, d, np.dtype(dt).name, missing, impls))
    return plan


def _machine_limits(pool, bar, machine, stream_mib, sgemm_n, repeat, pause):
    """STREAM and SGEMM, each in a worker of its own, into ``machine``."""
    for i, (op, args) in enumerate((("stream", {"array_mib": stream_mib}),
                                    ("sgemm", {"n": sgemm_n}))):
        if i:
            time.sleep(pause)
        bar.set_description(op.upper())
        rep = pool.request(op, {"op": op, "args": {**args, "repeat": max(repeat, 3)}})
        machine[op] = rep.get(op, {"error": rep.get("error")})
        pool.close_group(op)
        bar.update()


def _case_round(pool, bar, k, row, timing, impls, paired, stream_mib, repeat, pause):
    """One round of a case: each group's worker times its implementations.

    Returns (times by implementation, the paired STREAM probe or None).
    """
    times, probe = {}, None
    for g, names in impls.items():
        bar.set_description(f"{k.name} {row['size']} {row['dtype']} [{g}]")
        req = {"op": "case", "kernel": k.name, "n": row["n"], "d": row["d"],
               "dtype": row["dtype"], "impls": names, "timing": timing}
        if paired and g == "fastnn":
            req["paired_stream"] = {"array_mib": stream_mib, "pairs": repeat}
        rep = pool.request(g, req)
        probe = rep.get("paired_stream", probe)
        if "times" in rep:
            times.update(rep["times"])
        else:
            times.update({name: {"error": rep.get("error", "no answer")} for name in names})
        time.sleep(pause)
    return times, probe


def _measure_case(pool, bar, case, timing, stream_mib, repeat, pause, rounds, confirm):
    """The result row of one planned case (skipped, or timed until stable)."""
    k, n, d, dt, missing, impls = case
    work, unit, peak = k.work(n, d, np.dtype(dt).itemsize)
    row = {"kernel": k.name, "size": k.label(n, d), "n": n, "d": d, "dtype": dt,
           "work": work, "unit": unit, "peak": peak, "times": {}, "skipped": None}
    if missing:
        row["skipped"] = "not implemented yet: " + ", ".join(missing)
        return row
    # The shared machine's bandwidth drifts by tens of % within a run:
    # a DRAM-sized memory-bound case is also timed in rounds that
    # alternate one call with a STREAM copy and triad (its "% of STREAM").
    paired = unit == "B" and n * d * np.dtype(dt).itemsize >= _SIDE_BY_SIDE_BYTES
    row["times"], probe, row["stability"] = measure_stably(
        functools.partial(_case_round, pool, bar, k, row, timing, impls, paired,
                          stream_mib, repeat, pause),
        max_rounds=rounds, confirm=confirm)
    # One step per group however many rounds the row took: the total is planned.
    bar.update(len(impls))
    if probe is not None:
        row["paired_stream"] = probe
    return row


def run(kernel_patterns=None, sizes=_cases.DEFAULT_SIZES, dtypes=("float32",),
        against=_cases.COMPETITORS, repeat=7, quick=False, startup=None, progress=True,
        stream_mib=None, sgemm_n=None, confirm=False):
    """Run the benchmark and return the result dict (see ``fastnn bench``).

    ``confirm``: measure every row at least twice, interleaved, and mark it
    unstable when a ratio moved between the rounds (``--check`` runs).
    """
    kernels = _cases.select(kernel_patterns)
    # A row whose samples disagree is measured again (see _stability); a
    # quick run only marks it, its short samples are noisy by design.
    rounds = 1 if quick else MAX_ROUNDS
    timing, stream_mib, sgemm_n, pause = _timing(quick, repeat, stream_mib, sgemm_n)
    if startup is None:
        startup = not quick
    groups = _groups(against)
    plan = _plan(kernels, sizes, dtypes, groups)
    total = 2 + sum(len(p[5]) for p in plan if not p[4]) + (1 if startup else 0)

    bar = _progress(total, progress)
    pool = Pool()
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "processor": cpu_name(), "class": machine_class(),
               "loadavg_start": _loadavg()}
    results = []
    try:
        _machine_limits(pool, bar, machine, stream_mib, sgemm_n, repeat, pause)
        for case in plan:
            results.append(_measure_case(pool, bar, case, timing, stream_mib, repeat, pause,
                                         rounds, confirm))
    finally:
        pool.close()
        machine["workers"] = pool.infos
        machine["unavailable"] = pool.unavailable
        machine["loadavg_end"] = _loadavg()
    start = None
    if startup:
        bar.set_description("startup (import + first call, 2 processes)")
        start = measure_startup()
        bar.update()
    bar.close()

    out = {
        # 2: rows may time "fastnn_out" (reused out= buffers) and carry
        # "rate_impl"; schema-1 files load and report unchanged.
        "schema": 2,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "fastnn bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
        "quick": bool(quick),
        "settings": {"repeat": repeat, "timing": timing, "sizes": list(sizes),
                     "dtypes": list(dtypes), "groups": groups,
                     "stream_mib": stream_mib, "sgemm_n": sgemm_n},
        "versions": _versions(),
        "machine": machine,
        "startup": start,
        "facts": _facts(),
        "results": results,
    }
    from ._report import derive
    for row in results:
        derive(row, out)
    return out


def _loadavg():
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_name():
    """The processor's model name (from /proc/cpuinfo, else ``platform.processor()``), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _facts():
    """Structural facts the targets need (e.g. dropout stores no mask)."""
    facts = {}
    try:
        import inspect

        import fastnn.functional as F
        if hasattr(F, "dropout_backward"):
            facts["dropout_backward_params"] = list(
                inspect.signature(F.dropout_backward).parameters)
    except Exception:
        pass
    return facts
