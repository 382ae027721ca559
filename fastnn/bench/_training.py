"""``fastnn bench --training``: whole training runs against torch and scikit-learn.

Method: every (round, case, library) is a FRESH process
(``python -m fastnn.bench._training LIB CASE EPOCHS``), so no two thread
pools share a process and the first epoch is timed as a user meets it (numba
loading its cached kernels).  Rounds interleave the cases and libraries, and
each number is the median over the rounds.  Every library trains the same
network (ReLU hidden layers, He-normal weights, zero biases; scikit-learn
keeps its own Glorot init) with Adam lr 1e-3, the same batch size, shuffling
every epoch, no weight penalty (scikit-learn ``alpha=0``, ``tol=0``,
``max_iter`` = epochs), float32 (scikit-learn: float32 input).  Per epoch
means one pass over the training set, timed over all epochs after a
one-epoch warm-up fit on a separate model; "first epoch" is that warm-up.

The fastnn worker also times the engine alone (``Plan.epoch``, the median
of 21 epochs, divided by the steps): "engine step" in the report.

Libraries: ``fastnn`` (``fit``, compiled engine), ``layers`` (``fit``,
``engine="layers"``), ``torch`` (a plain eager loop, ``torch.set_num_threads(2)``),
``sklearn`` (``MLPClassifier`` / ``MLPRegressor``).  The ``fit_many`` case
trains 16 models of the breast-cancer net with ``fit_many`` and with 16
sequential ``fit`` calls, in one fastnn process.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

TAG = "@@fastnn-training@@ "
LIBS = ("fastnn", "layers", "torch", "sklearn")
N_MANY = 16
# name -> (data set, layer sizes, batch size, epochs, loss)
CASES = {
    "breast_cancer 30-16-16-2 b32": ("breast_cancer", (30, 16, 16, 2), 32, 30, "cross_entropy"),
    "digits 64-128-10 b64": ("digits", (64, 128, 10), 64, 20, "cross_entropy"),
    "digits 64-256-256-10 b32": ("digits", (64, 256, 256, 10), 32, 10, "cross_entropy"),
    "synthetic 4-32-16-4 b32 (MSE)": ("synthetic", (4, 32, 16, 4), 32, 30, "mse"),
}
MANY_CASE = "fit_many 16 x 30-16-16-2 b32"
# (case, metric, library, bound, kind): "ratio" = library time / fastnn time >= bound;
# "max" = fastnn metric <= bound; "min" = fastnn metric >= bound.
TARGETS = [
    ("breast_cancer 30-16-16-2 b32", "epoch_ms", "torch", 30.0, "ratio"),
    ("breast_cancer 30-16-16-2 b32", "epoch_ms", "sklearn", 15.0, "ratio"),
    ("digits 64-128-10 b64", "epoch_ms", "torch", 8.0, "ratio"),
    ("digits 64-128-10 b64", "epoch_ms", "sklearn", 4.0, "ratio"),
    ("digits 64-256-256-10 b32", "epoch_ms", "torch", 4.0, "ratio"),
    ("digits 64-256-256-10 b32", "epoch_ms", "sklearn", 4.0, "ratio"),
    ("synthetic 4-32-16-4 b32 (MSE)", "engine_step_us", None, 10.0, "max"),
    (MANY_CASE, "speedup", None, 1.7, "min"),
    ("breast_cancer 30-16-16-2 b32", "first_epoch_s", None, 1.0, "max"),
]


def load(name, quick=False):
    """(X_train, y_train, X_val, y_val) float32 standardized, for a data set name."""
    if name == "synthetic":
        rng = np.random.default_rng(0)
        n = 256 if quick else 1024
        X = rng.standard_normal((n + n // 4, 4))
        y = np.tanh(X @ rng.standard_normal((4, 4))) + 0.1 * rng.standard_normal((len(X), 4))
        parts = X[:n], y[:n], X[n:], y[n:]
    else:
        from sklearn import datasets
        from sklearn.model_selection import train_test_split
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        test = 0.2 if name == "breast_cancer" else 0.25
        parts = train_test_split(X, y, test_size=test, stratify=y, random_state=0)
        parts = [parts[0], parts[2], parts[1], parts[3]]
    Xtr, ytr, Xva, yva = parts
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd[sd == 0] = 1
    f32 = np.float32
    yt = ytr.astype(f32) if ytr.dtype.kind == "f" else ytr
    yv = yva.astype(f32) if yva.dtype.kind == "f" else yva
    return ((Xtr - mu) / sd).astype(f32), yt, ((Xva - mu) / sd).astype(f32), yv


def _score(pred, y, loss):
    """Validation accuracy (classification) or MSE (regression) of host predictions."""
    if loss == "mse":
        return float(np.mean((pred - y) ** 2))
    return float(np.mean(pred.argmax(axis=1) == y))


def _fastnn_model(sizes, seed=0):
    from fastnn import nn
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], rng=seed + i))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _train_fastnn(data, sizes, batch, epochs, loss, engine="compiled"):
    from fastnn import optim, train
    Xtr, ytr, Xva, yva = data

    def run(n_epochs, seed):
        model = _fastnn_model(sizes, seed)
        t = time.perf_counter()
        train.fit(model, Xtr, ytr, loss=loss, optimizer=optim.Adam(model.parameters(), lr=1e-3),
                  epochs=n_epochs, batch_size=batch, rng=seed, progress=False, engine=engine)
        return time.perf_counter() - t, model

    first, _ = run(1, 100)
    total, model = run(epochs, 0)
    return first, 1e3 * total / epochs, _score(train.predict(model, Xva), yva, loss)


def _engine_step_us(data, sizes, batch, loss, repeat=21):
    """Median time per step of one engine epoch call.

    Plan.epoch alone: fit's Python around it is excluded.
    """
    from fastnn import engine, optim, train
    Xtr, ytr = data[0], data[1]
    ytr = ytr.astype(np.int64) if loss != "mse" else ytr
    model = _fastnn_model(sizes)
    batches = train.batch_bounds(len(Xtr), batch)
    plan = engine.Plan(model, optim.Adam(model.parameters(), lr=1e-3), loss, sizes[0], batches)
    order = np.random.default_rng(0).permutation(len(Xtr))
    lrs, seeds = np.full(len(batches), 1e-3), plan.draw_seeds(len(batches))
    times = []
    with engine.one_blas_thread():
        for _ in range(repeat + 1):
            t = time.perf_counter()
            plan.epoch(Xtr, ytr, order, lrs, seeds)
            times.append(time.perf_counter() - t)
    return 1e6 * statistics.median(times[1:]) / len(batches)


def _train_torch(data, sizes, batch, epochs, loss):
    import torch
    torch.set_num_threads(2)
    Xtr, ytr, Xva, yva = (torch.from_numpy(np.asarray(a)) for a in data)
    loss_fn = torch.nn.functional.cross_entropy if loss != "mse" else torch.nn.functional.mse_loss

    def run(n_epochs, seed):
        torch.manual_seed(seed)
        layers = []
        for i in range(len(sizes) - 1):
            lin = torch.nn.Linear(sizes[i], sizes[i + 1])
            torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            torch.nn.init.zeros_(lin.bias)
            layers += [lin, torch.nn.ReLU()] if i < len(sizes) - 2 else [lin]
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t = time.perf_counter()
        for _ in range(n_epochs):
            perm = torch.randperm(len(Xtr))
            for s in range(0, len(Xtr), batch):
                idx = perm[s:s + batch]
                opt.zero_grad()
                loss_fn(model(Xtr[idx]), ytr[idx]).backward()
                opt.step()
        return time.perf_counter() - t, model

    first, _ = run(1, 100)
    total, model = run(epochs, 0)
    with torch.no_grad():
        pred = model(Xva).numpy()
    return first, 1e3 * total / epochs, _score(pred, yva.numpy(), loss)


def _train_sklearn(data, sizes, batch, epochs, loss):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    Xtr, ytr, Xva, yva = data
    cls = MLPRegressor if loss == "mse" else MLPClassifier

    def run(n_epochs, seed):
        est = cls(hidden_layer_sizes=sizes[1:-1], batch_size=batch, learning_rate_init=1e-3,
                  max_iter=n_epochs, tol=0.0, alpha=0.0, n_iter_no_change=n_epochs + 1,
                  random_state=seed)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xtr, ytr)
        return time.perf_counter() - t, est

    first, _ = run(1, 100)
    total, est = run(epochs, 0)
    pred = est.predict(Xva) if loss == "mse" else est.predict_proba(Xva)
    return first, 1e3 * total / epochs, _score(pred, yva, loss)


def _fit_many_speedup(data, epochs):
    """(models per second with fit_many) / (with sequential fit calls), 16 models."""
    from fastnn import optim, train
    Xtr, ytr = data[0], data[1]
    sizes = CASES["breast_cancer 30-16-16-2 b32"][1]

    def models():
        ms = [_fastnn_model(sizes, 10 * k) for k in range(N_MANY)]
        return ms, [optim.Adam(m.parameters(), lr=1e-3) for m in ms]
    ms, opts = models()
    train.fit_many(ms[:2], Xtr, ytr, opts[:2], epochs=1, batch_size=32)   # load the kernels
    ms, opts = models()
    t = time.perf_counter()
    train.fit_many(ms, Xtr, ytr, opts, epochs=epochs, batch_size=32, rng=list(range(N_MANY)))
    many = time.perf_counter() - t
    ms, opts = models()
    t = time.perf_counter()
    for k, (m, o) in enumerate(zip(ms, opts)):
        train.fit(m, Xtr, ytr, optimizer=o, epochs=epochs, batch_size=32, rng=k, progress=False)
    return (time.perf_counter() - t) / many


def worker(lib, case, epochs, quick):
    """Run one (library, case) in this process; returns the result dict."""
    if case == MANY_CASE:
        return {"speedup": _fit_many_speedup(load("breast_cancer"), epochs)}
    name, sizes, batch, _, loss = CASES[case]
    data = load(name, quick)
    if lib in ("fastnn", "layers"):
        first, epoch_ms, score = _train_fastnn(data, sizes, batch, epochs, loss,
                                               "compiled" if lib == "fastnn" else "layers")
    else:
        first, epoch_ms, score = {"torch": _train_torch, "sklearn": _train_sklearn}[lib](
            data, sizes, batch, epochs, loss)
    steps = -(-len(data[0]) // batch)
    out = {"first_epoch_s": first, "epoch_ms": epoch_ms, "step_us": 1e3 * epoch_ms / steps,
           "score": score, "score_name": "val MSE" if loss == "mse" else "val accuracy"}
    if lib == "fastnn":
        out["engine_step_us"] = _engine_step_us(data, sizes, batch, loss, 5 if quick else 21)
    return out


def _env(lib):
    """The environment of a worker: fastnn's thread settings only for fastnn's processes."""
    from fastnn._config import SET_BY_FASTNN
    env = dict(os.environ)
    if lib not in ("fastnn", "layers"):
        for name in SET_BY_FASTNN:
            env.pop(name, None)
    return env


def _spawn(lib, case, epochs, quick):
    cmd = [sys.executable, "-m", "fastnn.bench._training", lib, case, str(epochs)]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(lib), timeout=1800,
                          check=False)   # a failure is reported below, with its stderr
    for line in proc.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise RuntimeError(f"training worker {lib} / {case} failed (status {proc.returncode}):\n"
                       + proc.stderr[-2000:])


def available(libs):
    """The libraries of ``libs`` importable here (torch and scikit-learn are optional)."""
    import importlib.util
    need = {"torch": "torch", "sklearn": "sklearn"}
    return [lib for lib in libs if lib not in need or importlib.util.find_spec(need[lib])]


def run(rounds=3, quick=False, libs=LIBS, progress=print):
    """Every case x library in fresh processes, ``rounds`` interleaved rounds; medians.

    Returns ``{"rounds", "quick", "results": {case: {lib: {metric: median}}}}``.
    With ``quick`` the epochs drop to 2 and the synthetic set to 256 rows
    (a smoke run: the data sets and libraries are the same).
    """
    libs = available(libs)
    samples = {}
    for r in range(rounds):
        for case, (_, _, _, epochs, _) in CASES.items():
            for lib in libs:
                if lib == "sklearn" and quick and case.startswith("digits 64-256"):
                    continue
                res = _spawn(lib, case, 2 if quick else epochs, quick)
                samples.setdefault(case, {}).setdefault(lib, []).append(res)
                progress(f"round {r + 1}/{rounds} {case} {lib}: {res['epoch_ms']:.3g} ms/epoch")
        if "fastnn" in libs:
            res = _spawn("fastnn", MANY_CASE, 2 if quick else 30, quick)
            samples.setdefault(MANY_CASE, {}).setdefault("fastnn", []).append(res)
    results = {}
    for case, per_lib in samples.items():      # medians over the rounds, metric by metric
        for lib, runs in per_lib.items():
            results.setdefault(case, {})[lib] = {
                k: runs[0][k] if isinstance(runs[0][k], str)
                else statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"rounds": rounds, "quick": quick, "results": results}


def table(result):
    """The results as a markdown table (ms per epoch, ratios, validation scores)."""
    res = result["results"]
    lines = [("| case | fastnn ms/epoch (us/step) | layer path | torch 2.13 eager | "
              "scikit-learn | x torch | x sklearn | val score fastnn / layers / torch / sklearn |"),
             "|---|---|---|---|---|---|---|---|"]
    for case in CASES:
        if case not in res:
            continue
        r = res[case]
        ms = {lib: r[lib]["epoch_ms"] for lib in r}
        cell = [f"{ms[lib]:.3g}" if lib in ms else "-" for lib in ("layers", "torch", "sklearn")]
        ratio = [f"{ms[lib] / ms['fastnn']:.1f}x" if lib in ms and "fastnn" in ms else "-"
                 for lib in ("torch", "sklearn")]
        scores = " / ".join(f"{r[lib]['score']:.3f}" if lib in r else "-" for lib in LIBS)
        fast = f"{ms['fastnn']:.3g} ({r['fastnn']['step_us']:.3g})" if "fastnn" in ms else "-"
        name = r[next(iter(r))]["score_name"]
        lines.append(f"| {case} | {fast} | {' | '.join(cell)} | {' | '.join(ratio)} | "
                     f"{name}: {scores} |")
    if MANY_CASE in res:
        lines.append(f"\n{MANY_CASE}: fit_many trains {res[MANY_CASE]['fastnn']['speedup']:.2f}x "
                     f"the models per second of {N_MANY} sequential fit calls")
    steps = [f"{case.split()[1]} {res[case]['fastnn']['engine_step_us']:.3g}" for case in CASES
             if "engine_step_us" in res.get(case, {}).get("fastnn", {})]
    if steps:
        lines.append("engine step, us (median Plan.epoch / steps, fit's Python excluded): "
                     + ", ".join(steps))
    first = res.get("breast_cancer 30-16-16-2 b32", {}).get("fastnn")
    if first:
        lines.append(f"first epoch in a fresh process (cached kernels): "
                     f"{first['first_epoch_s']:.2f} s")
    return "\n".join(lines)


def check(result):
    """Each target of issue 12 with PASS/MISS and the measured value."""
    res, lines = result["results"], ["targets (issue 12, fp32):"]
    for case, metric, lib, bound, kind in TARGETS:
        fast = res.get(case, {}).get("fastnn")
        if fast is None or (lib is not None and lib not in res[case]):
            lines.append(f"  SKIP {case} {metric} {lib or ''}: not measured")
            continue
        value = res[case][lib][metric] / fast[metric] if kind == "ratio" else fast[metric]
        ok = value >= bound if kind in ("ratio", "min") else value <= bound
        what = f"x {lib}" if kind == "ratio" else metric
        sign = ">=" if kind in ("ratio", "min") else "<="
        lines.append(f"  {'PASS' if ok else 'MISS'} {case}: {what} {value:.3g} "
                     f"(target {sign} {bound:g})")
    return "\n".join(lines)


def main(args):
    """``fastnn bench --training [--quick] [--repeat R] [--json F] [--check]``."""
    result = run(rounds=args.repeat or (1 if args.quick else 3), quick=args.quick,
                 progress=(lambda msg: None) if args.no_progress else
                 (lambda msg: print(msg, file=sys.stderr)))
    print(table(result))
    if args.check:
        print(check(result))
    if args.json:
        from . import save_json
        save_json(result, args.json, "training")
    return 0


if __name__ == "__main__":
    _lib, _case, _epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _out = worker(_lib, _case, _epochs, "--quick" in sys.argv[4:])
    sys.stdout.write(TAG + json.dumps(_out) + "\n")
