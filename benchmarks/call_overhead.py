"""Small-call overhead of fastnn.functional, two source trees side by side.

    python benchmarks/call_overhead.py OLD_TREE NEW_TREE [--rounds 5]

Each tree (a directory holding a ``fastnn`` package, e.g. ``git archive``
of a commit unpacked somewhere) is timed in its own fresh process, rounds
alternating between the trees, so that the machine's drift hits both alike.
Each process times every call with ``timeit`` (best of 5 repeats of 2000
calls, after a warm-up) and prints microseconds per call; the table shows the
median over rounds for each tree and the ratio NEW / OLD, then the same for
the minimum over rounds (the least disturbed run: the better estimate of a
pure overhead).  Small shapes
(2 x 8, 64 x 256 float32) make the Python-side validation and dispatch the
bulk of each call.  Noise: when the median and the minimum ratios disagree,
the difference is the machine's, not the code's.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, timeit
import numpy as np
import fastnn.functional as F
rng = np.random.default_rng(0)
out = {}
for n, k in ((2, 8), (64, 256)):
    x = rng.standard_normal((n, k)).astype(np.float32)
    t = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k // 2, k)).astype(np.float32)
    b = rng.standard_normal(k // 2).astype(np.float32)
    calls = {
        "dropout": lambda: F.dropout(x, 0.5, seed=1),
        "softmax": lambda: F.softmax(x),
        "mse_loss_with_grad": lambda: F.mse_loss_with_grad(x, t),
        "linear": lambda: F.linear(x, w, b, activation="relu"),
    }
    for name, fn in calls.items():
        fn()
        best = min(timeit.repeat(fn, number=2000, repeat=5)) / 2000
        out[f"{name} {n}x{k}"] = best * 1e6
print(json.dumps(out))
"""


def _run(tree):
    env = dict(os.environ, PYTHONPATH=tree,
               NUMBA_CACHE_DIR=os.path.join(tree, ".numba_cache"))
    res = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                         capture_output=True, text=True, cwd=tree)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    for tree in trees.values():      # compile / load the caches outside the timed rounds
        _run(tree)
    runs = {"old": [], "new": []}
    for _ in range(args.rounds):
        for which, tree in trees.items():
            runs[which].append(_run(tree))
    print(f"{'call':28s} {'old us':>7s} {'new us':>7s} {'new/old':>7s}   "
          f"{'old min':>7s} {'new min':>7s} {'ratio':>6s}")
    for key in runs["old"][0]:
        old = [r[key] for r in runs["old"]]
        new = [r[key] for r in runs["new"]]
        mo, mn = statistics.median(old), statistics.median(new)
        print(f"{key:28s} {mo:7.2f} {mn:7.2f} {mn / mo:7.2f}   "
              f"{min(old):7.2f} {min(new):7.2f} {min(new) / min(old):6.2f}")


if __name__ == "__main__":
    main()
