"""fastnn.estimators against scikit-learn's MLPs: fit time and held-out score, default parameters.

Not an asv benchmark (asv imports this module and finds nothing to run); a
script, run once:

    python benchmarks/estimators_vs_sklearn.py                 # the five small data sets
    python benchmarks/estimators_vs_sklearn.py --large          # + make_classification 50k x 40
    python benchmarks/estimators_vs_sklearn.py --sets make_classification --one-thread
    python benchmarks/estimators_vs_sklearn.py --json           # ... saved in benchmarks/results/

Every (data set, contestant) pair runs in its own process, one after another
(scikit-learn, fastnn, fastnn with extras, per data set).  By default every
library keeps its own thread pools (what a user's script gets); with
``--one-thread`` every pool (OMP / OpenBLAS / MKL / numba) is capped at one
thread.  In each process one untimed fit first
(imports, numba's cache load, first-touch), then one timed fit per seed.
Data: standardized, a stratified 75/25 split per seed (the seed also seeds
the estimator); score is test accuracy (R^2 for diabetes).  Reported: the
median fit time over seeds, the mean score, and the ratio of medians.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

SEEDS = (0, 1, 2, 3, 4)
SMALL = ("digits", "breast_cancer", "wine", "iris", "diabetes")
EXTRAS = {"dropout": 0.1, "batch_norm": True, "lr_schedule": "warmup_cosine"}
CONTESTANTS = ("sklearn", "fastnn", "fastnn+extras")
ONE_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                            "NUMBA_NUM_THREADS"), "1")


def _load(name, seed):
    import numpy as np
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "make_classification":
        X, y = datasets.make_classification(n_samples=50_000, n_features=40, n_informative=20,
                                            n_classes=5, random_state=0)
    else:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    strat = None if name == "diabetes" else y
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=strat)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), np.asarray(y_tr), np.asarray(y_te)


def _estimator(name, contestant, seed):
    regress = name == "diabetes"
    if contestant == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        kw = {}
    else:
        from fastnn.estimators import MLPClassifier, MLPRegressor
        kw = EXTRAS if contestant == "fastnn+extras" else {}
    return (MLPRegressor if regress else MLPClassifier)(random_state=seed, **kw)


def worker(name, contestant):
    """Runs in the child: one warm-up fit, then one timed fit per seed; prints JSON."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    X_tr, X_te, y_tr, y_te = _load(name, 99)
    _estimator(name, contestant, 99).set_params(max_iter=2).fit(X_tr, y_tr)
    times, scores, iters = [], [], []
    for seed in SEEDS:
        X_tr, X_te, y_tr, y_te = _load(name, seed)
        est = _estimator(name, contestant, seed)
        t0 = time.perf_counter()
        est.fit(X_tr, y_tr)
        times.append(time.perf_counter() - t0)
        scores.append(float(est.score(X_te, y_te)))
        iters.append(int(est.n_iter_))
    print(json.dumps({"times": times, "scores": scores, "n_iter": iters}))


def _run(name, contestant, one_thread):
    env = dict(os.environ, **ONE_THREAD) if one_thread else dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--worker", name, contestant], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    import numpy as np

    from fastnn.bench import RESULTS_FOLDER

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true", help="add make_classification 50k x 40")
    ap.add_argument("--sets", nargs="+", choices=SMALL + ("make_classification",),
                    help="run only these data sets")
    ap.add_argument("--one-thread", action="store_true", help="cap every thread pool at 1")
    ap.add_argument("--json", nargs="?", const=RESULTS_FOLDER, metavar="FILE",
                    help="save every fit's times and scores (without FILE: "
                    "benchmarks/results/<machine>/estimators-*.json)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)
    names = SMALL + (("make_classification",) if args.large else ())
    names = tuple(args.sets) if args.sets else names
    print("| data set | scikit-learn s / score | fastnn s / score | speed-up | "
          "fastnn + extras s / score | epochs (sk / fastnn / extras) |")
    print("|---|---|---|---|---|---|")
    saved = {}
    for name in names:
        res = saved[name] = {c: _run(name, c, args.one_thread) for c in CONTESTANTS}
        print(f"<!-- {name}: {json.dumps(res)} -->", file=sys.stderr, flush=True)
        med = {c: float(np.median(res[c]["times"])) for c in CONTESTANTS}
        mean = {c: float(np.mean(res[c]["scores"])) for c in CONTESTANTS}
        epochs = " / ".join(f"{np.median(res[c]['n_iter']):.0f}" for c in CONTESTANTS)
        print(f"| {name} | {med['sklearn']:.3f} / {mean['sklearn']:.4f} | "
              f"{med['fastnn']:.3f} / {mean['fastnn']:.4f} | "
              f"{med['sklearn'] / med['fastnn']:.1f}x | "
              f"{med['fastnn+extras']:.3f} / {mean['fastnn+extras']:.4f} | {epochs} |",
              flush=True)
    if args.json:
        from fastnn.bench import save_json
        save_json({"one_thread": args.one_thread, "seeds": SEEDS, "extras": EXTRAS,
                   "results": saved}, args.json, "estimators")


if __name__ == "__main__":
    main()
