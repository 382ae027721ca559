"""Shared pieces of the lesson's experiments: data, splits, models, plotting.

Every experiment uses real data shipped with scikit-learn, split once with a
fixed seed (stated in the output), and float64 so the numbers behind a figure
are not blurred by rounding.
"""
import itertools
import os

import numpy as np

SEED = 0
VAL_FRACTION = 0.25
DTYPE = np.float64

# One palette for the whole lesson: "poor" choices warm, good ones cool.
COLORS = {
    "poor": "#d62728", "good": "#1f77b4", "train": "#1f77b4", "val": "#ff7f0e",
    "zeros": "#7f7f7f", "small": "#9467bd", "large": "#d62728",
    "xavier": "#ff7f0e", "he": "#2ca02c",
    "healthy": "#2ca02c", "collapsed": "#d62728", "exploded": "#d62728",
}


class Split:
    """A fixed train/validation split and the sentence that states it."""

    def __init__(self, X_train, X_val, y_train, y_val, description):
        self.X_train, self.X_val = X_train, X_val
        self.y_train, self.y_val = y_train, y_val
        self.description = description

    def __repr__(self):
        return self.description


def _sklearn_datasets():
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the lesson needs scikit-learn for its data sets: "
                          "pip install 'fastnn[data]'") from exc
    return sklearn.datasets, sklearn.model_selection


def _split(X, y, name, seed, stratify=True, test_size=VAL_FRACTION):
    _, ms = _sklearn_datasets()
    Xtr, Xva, ytr, yva = ms.train_test_split(
        X, y, test_size=test_size, random_state=seed,
        stratify=y if stratify else None)
    kind = "stratified " if stratify else ""
    desc = (f"{name}: {len(Xtr)} train / {len(Xva)} validation "
            f"({kind}{1 - test_size:.0%}/{test_size:.0%} split, seed {seed})")
    return Split(Xtr, Xva, ytr, yva, desc)


def breast_cancer(seed=SEED):
    """scikit-learn's breast cancer set: 569 x 30, features from 0 to 4254."""
    ds, _ = _sklearn_datasets()
    d = ds.load_breast_cancer()
    s = _split(d.data.astype(DTYPE), d.target.astype(np.int64), "breast cancer", seed)
    s.feature_names = list(d.feature_names)
    return s


def digits(seed=SEED, n_train=None):
    """scikit-learn's 8x8 digits (pixels 0..16), optionally a small stratified
    subset of the training split (the validation split is unchanged)."""
    ds, ms = _sklearn_datasets()
    d = ds.load_digits()
    s = _split(d.data.astype(DTYPE), d.target.astype(np.int64), "digits", seed)
    if n_train is not None and n_train < len(s.X_train):
        Xtr, _, ytr, _ = ms.train_test_split(
            s.X_train, s.y_train, train_size=n_train, random_state=seed,
            stratify=s.y_train)
        s.X_train, s.y_train = Xtr, ytr
        s.description += f"; training on a stratified subset of {n_train}"
    return s


def diabetes_bmi(seed=SEED, n_train=40):
    """scikit-learn's diabetes set reduced to one noisy relation: body-mass
    index -> disease progression one year later; a small training sample."""
    ds, _ = _sklearn_datasets()
    d = ds.load_diabetes(scaled=False)
    x = d.data[:, [2]].astype(DTYPE)
    y = d.target.astype(DTYPE)[:, None]
    frac = 1.0 - n_train / len(x)
    return _split(x, y, "diabetes (bmi -> progression)", seed, stratify=False,
                  test_size=frac)


def standardize(split):
    """Standardize with fastnn's StandardScaler fitted on the training split
    only (validation statistics must not leak into preprocessing)."""
    from fastnn.preprocessing import StandardScaler
    sc = StandardScaler().fit(split.X_train)
    return sc.transform(split.X_train), sc.transform(split.X_val)


def majority_fraction(y):
    counts = np.bincount(np.asarray(y))
    return counts.max() / counts.sum()


# -- models -----------------------------------------------------------------

def linear(n_in, n_out, init="he", std=None, activation=None, rng=None):
    """fastnn.nn.Linear with the init spelled as the lesson does."""
    from fastnn import nn
    kw = {}
    if std is not None:
        kw["std"] = std
    return nn.Linear(n_in, n_out, activation=activation, init=init, rng=rng,
                     dtype=DTYPE, **kw)


def mlp(sizes, init="he", std=None, activation="relu", batchnorm=False,
        dropout=0.0, rng=SEED, fuse=True):
    """A fully connected net: sizes = [in, hidden..., out].

    Hidden layers are Linear -> [BatchNorm1d] -> activation -> [Dropout]; the
    last layer is a plain Linear (logits).  ReLU without batch norm is fused
    into the Linear's epilogue unless ``fuse`` is False (then a separate ReLU
    layer follows, and the Linear's own output is the pre-activation).
    """
    from fastnn import nn
    rng = np.random.default_rng(rng)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        if last:
            layers.append(linear(a, b, init, std, None, rng))
            break
        fused = fuse and activation == "relu" and not batchnorm
        layers.append(linear(a, b, init, std, "relu" if fused else None, rng))
        if batchnorm:
            layers.append(nn.BatchNorm1d(b, dtype=DTYPE))
        if not fused:
            layers.append(acts[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout, rng=rng.integers(2 ** 31)))
    return nn.Sequential(*layers)


def linears(model):
    from fastnn import nn
    return [layer for layer in model if isinstance(layer, nn.Linear)]


def forward_trace(model, X):
    """Outputs of every layer of a Sequential in eval mode, in order."""
    model.eval()
    outs = []
    for layer in model:
        X = layer.forward(X)
        outs.append(X)
    return outs


def weights(model):
    """The weight matrices (out, in) of a model's Linear layers, as float64 copies."""
    return [np.array(layer.weight.data, dtype=np.float64) for layer in linears(model)]


def weight_sq_norm(model):
    return float(sum(np.sum(w ** 2) for w in weights(model)))


def series(history, key):
    """One per-epoch series of a fit history, as a float array."""
    if isinstance(history, dict):
        v = history[key]
    else:
        v = getattr(history, key)
    return np.asarray(v, dtype=np.float64)


def fit_sweep(runs, X, y, **common):
    """Train several models on the same data at once, with ``train.fit_many``.

    The one place the lesson trains a sweep (L2 strengths, learning rates):
    the models train side by side on the cores, each exactly as its own
    ``train.fit`` would.

    Parameters
    ----------
    runs : list of dict
        Each has "model" and "optimizer", plus any ``train.fit`` keyword
        that differs between runs (``l2``, ``schedule``, ...).
    X, y : arrays
        The training data, shared by every run.
    **common
        ``train.fit`` keywords shared by every run (``progress`` is ignored:
        sweeps train silently).

    Returns
    -------
    list of (history, divergence)
        ``divergence`` is None, or (epoch, step) where a run's loss became
        NaN/inf (its history then stops there).
    """
    from fastnn import train
    common = {k: v for k, v in common.items() if k != "progress"}
    per_run = sorted({k for r in runs for k in r} - {"model", "optimizer"})
    per_model = {}
    for key in per_run:   # every run needs a value for fit_many's per-model list
        missing = [i for i, r in enumerate(runs) if key not in r]
        if missing:
            raise ValueError(f"fit_sweep: runs {missing} lack {key!r}")
        per_model[key] = [r[key] for r in runs]
        common.pop(key, None)
    # A too-high rate overflows on purpose; fit reports it as a divergence.
    with np.errstate(over="ignore", invalid="ignore"):
        outcomes = train.fit_many([r["model"] for r in runs], X, y,
                                  [r["optimizer"] for r in runs], return_exceptions=True,
                                  per_model=per_model, **common)
    out = []
    for o in outcomes:
        if isinstance(o, train.DivergenceError):
            out.append((o.history, (o.epoch, o.step)))
        elif isinstance(o, Exception):
            raise o
        else:
            out.append((o, None))
    return out


def loss_and_accuracy(model, X, y):
    """(cross-entropy, accuracy) in eval mode (dropout off, running BN stats)."""
    from fastnn import train
    r = train.evaluate(model, X, y)
    return r["loss"], r["accuracy"]


# -- plotting ----------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot on the Agg backend, with the lesson's style."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the lesson's figures need matplotlib: "
                          "pip install 'fastnn[plot]'") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "font.size": 10,
        "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.3,
    })
    return plt


def save(fig, out_dir, name):
    """Save and close a figure; returns the file's path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def report(number, title, lines, out=None):
    """Print an experiment's numbers under a numbered heading."""
    import sys
    out = out or sys.stdout
    print(f"\n== {number}. {title} ==", file=out)
    for line in lines:
        print("  " + line, file=out)
    out.flush()

