"""Before/after for a change: a base commit against HEAD (or the working tree), alternated.

    python benchmarks/compare.py main                  # main vs the working tree
    python benchmarks/compare.py HEAD~3 HEAD --only kernels --sizes tiny,small
    python benchmarks/compare.py main --json           # ... saved in benchmarks/results/<machine>/

Each side is a source tree: a ``git worktree`` of the commit (the working
tree itself when no second commit is given), imported through ``PYTHONPATH``
by fresh processes with their own numba cache.  Rounds alternate the sides
(base, head, then head, base, ...), so the machine's drift hits both alike.
Three groups, each measured the way its own tool measures it:

* ``kernels``: ``fastnn bench --json`` (fastnn only, no competitors) of that
  tree: the median of its samples per kernel, size and dtype;
* ``training``: the asv suites' training fits, estimator fit and predictions
  (``benchmarks/asv_bench/bench_training.py`` of this checkout, so both
  sides run the same calls): the median of 7 samples after a warm-up;
* ``cold``: the asv suite's cold starts (a first fit with an empty numba
  cache), one process per round.

The noise rule (``fastnn.bench._stability.before_after``): a row is slower
only when the ratio of the two sides' best rounds exceeds both the spread
between the rounds of the same code and 1.10; faster likewise.  The table
lists every row with its verdict, then the count of each verdict and the
geometric mean of the ratios.
"""
import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastnn.bench import RESULTS_FOLDER, save_json
from fastnn.bench._report import fmt_time
from fastnn.bench._stability import before_after

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from asv_bench import bench_startup, bench_training  # noqa: E402

GROUPS = ("kernels", "training", "cold")
TRAINING_CLASSES = (bench_training.TrainingFit, bench_training.EstimatorFit,
                    bench_training.Predict)

# Runs in a fresh process of one tree: times asv-style benchmark methods.
TIMER = r"""
import importlib, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
out = {}
for module, cls, method, params in json.loads(sys.argv[2]):
    obj = getattr(importlib.import_module("asv_bench." + module), cls)()
    key = f"{cls}.{method}{tuple(params) if params else ''}"
    try:
        obj.setup(*params)
    except NotImplementedError as exc:   # absent from this tree
        continue
    fn = getattr(obj, method)
    number, t = 1, 0.0
    while True:                          # calls per sample: >= 20 ms
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*params)
        t = time.perf_counter() - t0
        if t >= 0.02:
            break
        number *= 2
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*params)
        samples.append((time.perf_counter() - t0) / number)
    out[key] = statistics.median(samples)
print("@@" + json.dumps(out))
"""


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _env(tree, cache):
    return dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(cache))


def _kernels(tree, cache, args, scratch):
    out = Path(scratch) / "kernels.json"
    cmd = [sys.executable, "-m", "fastnn", "bench", "--against", "", "--no-startup",
           "--no-progress", "--sizes", args.sizes, "--dtypes", args.dtypes, "--json", str(out)]
    if args.kernels:
        cmd += ["--kernels", args.kernels]
    subprocess.run(cmd, cwd=tree, env=_env(tree, cache), check=True, capture_output=True)
    rows = json.loads(out.read_text())["results"]
    return {f"{r['kernel']} {r['size']} {r['dtype']}": r["times"]["fastnn"]["median"]
            for r in rows if not r.get("skipped") and "median" in r["times"].get("fastnn", {})}


def _training(tree, cache, args, scratch):
    specs = []
    for cls in TRAINING_CLASSES:
        grid = list(itertools.product(*cls.params)) if hasattr(cls, "params") else [()]
        for method in sorted(m for m in vars(cls) if m.startswith("time_")):
            specs += [("bench_training", cls.__name__, method, list(p)) for p in grid]
    res = subprocess.run([sys.executable, "-c", TIMER, str(ROOT / "benchmarks"),
                          json.dumps(specs)], cwd=tree, env=_env(tree, cache), check=True,
                         capture_output=True, text=True)
    line = next(ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("@@"))
    return json.loads(line[2:])


def _cold(tree, cache, args, scratch):
    out = {}
    for name, fit in bench_startup.COLD_FITS.items():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", bench_startup.COLD_START.format(fit=fit)],
                       cwd=tree, env=_env(tree, cache), check=True, capture_output=True)
        out[f"cold start {name}"] = time.perf_counter() - t0
    return out


MEASURE = {"kernels": _kernels, "training": _training, "cold": _cold}


def _table(rows, base, head):
    lines = [f"before/after: {base} -> {head}",
             f"{'group':<9}{'row':<58}{'before':>11}{'after':>11}{'ratio':>8}{'noise':>7}  verdict"]
    for (group, name), v in rows.items():
        lines.append(f"{group:<9}{name[:57]:<58}{fmt_time(v['before']):>11}"
                     f"{fmt_time(v['after']):>11}{v['ratio']:>8.3f}{v['noise']:>7.2f}  "
                     f"{v['verdict']}")
    verdicts = [v["verdict"] for v in rows.values()]
    gmean = math.exp(sum(math.log(v["ratio"]) for v in rows.values()) / max(len(rows), 1))
    lines.append(f"{len(rows)} rows: {verdicts.count('same')} same, "
                 f"{verdicts.count('faster')} faster, {verdicts.count('slower')} slower; "
                 f"geometric mean of after/before {gmean:.3f}")
    lines.append("ratio = after / before of the best round (> 1: slower); noise = the larger "
                 "spread between rounds of the same code; a change must exceed both it and 1.10")
    return "\n".join(lines)


def compare(base, head, args):
    """Measure both trees in alternated rounds; {(group, row): verdict dict}."""
    times = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="fastnn-compare-") as scratch:
        trees = {}
        for side, rev in (("before", base), ("after", head)):
            if rev is None:
                trees[side] = ROOT
                continue
            trees[side] = Path(scratch) / side
            _git("worktree", "add", "--detach", "-f", str(trees[side]), rev)
        try:
            for r in range(args.rounds):
                for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    for group in args.only:
                        print(f"round {r + 1}/{args.rounds}: {side} {group}", file=sys.stderr,
                              flush=True)
                        got = MEASURE[group](trees[side], Path(scratch) / f"cache-{side}",
                                             args, scratch)
                        for name, t in got.items():
                            times[side].setdefault((group, name), []).append(t)
        finally:
            for side, rev in (("before", base), ("after", head)):
                if rev is not None:
                    _git("worktree", "remove", "--force", str(trees[side]))
    return {key: {"before": min(times["before"][key]), "after": min(times["after"][key]),
                  **before_after(times["before"][key], times["after"][key])}
            for key in times["before"] if key in times["after"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("base", help="the commit before the change (any git revision)")
    ap.add_argument("head", nargs="?", help="the commit after it (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=2, help="alternated rounds per side (>= 2)")
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(GROUPS),
                    help=f"groups to measure, of {','.join(GROUPS)} (default all)")
    ap.add_argument("--kernels", help="fastnn bench --kernels for the kernels group")
    ap.add_argument("--sizes", default="tiny,small,medium", help="fastnn bench --sizes")
    ap.add_argument("--dtypes", default="float32", help="fastnn bench --dtypes")
    ap.add_argument("--json", nargs="?", const=RESULTS_FOLDER, metavar="FILE",
                    help="save the verdicts (without FILE: benchmarks/results/<machine>/)")
    args = ap.parse_args(argv)
    bad = set(args.only) - set(GROUPS)
    if bad or args.rounds < 2:
        ap.error(f"unknown group {sorted(bad)}" if bad else "--rounds must be >= 2: the noise "
                 "rule needs two rounds of each side")
    base = _git("rev-parse", "--verify", args.base + "^{commit}")
    head = args.head and _git("rev-parse", "--verify", args.head + "^{commit}")
    rows = compare(base, head, args)
    head_name = head[:8] if head else "working tree"
    print(_table(rows, base[:8], head_name))
    if args.json:
        save_json({"base": base, "head": head or "working tree", "rounds": args.rounds,
                   "rows": [{"group": g, "row": n, **v} for (g, n), v in rows.items()]},
                  args.json, "compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
