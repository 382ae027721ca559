"""3. Initialization: activation variance layer by layer, histograms, health,
and the symmetry problem of zero init.

Deep ReLU networks (width 100) on standardized digits: each of five inits is
pushed through a 5-layer and a 10-layer network (one forward pass, eval mode),
and fastnn.diagnostics gives each layer a verdict.
"""
import numpy as np

from . import _common as C

TITLE = "Initialization (ReLU networks of width 100 on standardized digits)"
INITS = [  # (key, label, init, std)
    ("zeros", "zeros", "zeros", None),
    ("small", "small N(0, 0.01)", "normal", 0.01),
    ("large", "large N(0, 1)", "normal", 1.0),
    ("xavier", "Xavier (var 1/n_in)", "xavier", None),
    ("he", "He (var 2/n_in)", "he", None),
]
WIDTH = 100


def _hidden_indices(model):
    """Positions of the layers whose output is a hidden layer's activation."""
    from fastnn import nn
    acts = (nn.ReLU, nn.Tanh, nn.Sigmoid)
    return [i for i, layer in enumerate(model)
            if isinstance(layer, acts)
            or (isinstance(layer, nn.Linear) and layer.activation is not None)]


def _hidden_outputs(model, X):
    """Post-activation output of every hidden layer (eval mode)."""
    outs = C.forward_trace(model, X)
    return [np.asarray(outs[i], dtype=np.float64) for i in _hidden_indices(model)]


def _health(model, X):
    """fastnn.diagnostics.health verdicts of the hidden layers, and its summary."""
    from fastnn import diagnostics
    h = diagnostics.health(model, X)
    return [h.layers[i]["verdict"] for i in _hidden_indices(model)], h.summary


def _symmetry(data, activation, epochs):
    """Train a zero-init 30-16-16-2 net; are the hidden units still identical?"""
    from fastnn import optim, train
    Xtr, Xva = C.standardize(data)
    model = C.mlp([30, 16, 16, 2], init="zeros", activation=activation, rng=C.SEED)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    train.fit(model, Xtr, data.y_train, loss="cross_entropy", optimizer=opt,
              epochs=epochs, batch_size=32, validation=(Xva, data.y_val),
              rng=C.SEED, progress=False)
    W = C.weights(model)
    # Hidden unit i is row i of its layer's weight (and column i of the next).
    spread = max(float(np.max(np.abs(w - w[:1]))) for w in W[:2])
    spread = max(spread, float(np.max(np.abs(W[2] - W[2][:, :1]))))
    moved = float(sum(np.sum(w ** 2) for w in W[:2]) ** 0.5)
    h = _hidden_outputs(model, Xva)
    out_spread = max(float(np.max(np.abs(a - a[:, :1]))) for a in h)
    _, acc = C.loss_and_accuracy(model, Xva, data.y_val)
    return {"max_unit_difference": spread, "hidden_weight_norm": moved,
            "max_activation_difference": out_spread, "val_accuracy": acc,
            "first_layer_weight": W[0]}


# -- the interactive page's "Forward Pass": fresh weights, fresh batch, each press

#: Passes precomputed per init; the page steps through them press by press.
N_PASSES = 32
PASS_BATCH = 256
PASS_DEPTH = 5


def pass_inputs():
    """The images a pass draws its batch from: standardized digits (training split)."""
    X, _ = C.standardize(C.digits())
    return X


def pass_model(key, k, depth=PASS_DEPTH):
    """Pass ``k``'s network for the init ``key`` (a key of :data:`INITS`).

    A ``depth``-hidden-layer ReLU net of width :data:`WIDTH` on the 64 digit
    pixels, its weights drawn afresh for every pass (seed ``(init index, k)``).
    """
    keys = [i[0] for i in INITS]
    if key not in keys:
        raise ValueError(f"unknown init {key!r}; choose from {keys}")
    i = keys.index(key)
    _, _, init, std = INITS[i]
    return C.mlp([64] + [WIDTH] * depth + [10], init=init, std=std, rng=[i, int(k)])


def pass_batch(X, k, batch=PASS_BATCH):
    """Pass ``k``'s batch: ``batch`` rows of X drawn without replacement (seed ``(SEED, k)``)."""
    rng = np.random.default_rng([C.SEED, int(k)])
    return X[rng.choice(len(X), min(batch, len(X)), replace=False)]


def forward_pass(X, key, k, bins=30):
    """One press of "Forward Pass": pass ``k`` of the init ``key``.

    Parameters
    ----------
    X : ndarray (N, 64)
        The images to draw the batch from (:func:`pass_inputs`).
    key : str
        "zeros", "small", "large", "xavier" or "he".
    k : int >= 0
        The pass: its weights and batch (:func:`pass_model`, :func:`pass_batch`).
    bins : int
        Histogram bins per layer.

    Returns
    -------
    list of dict, one per hidden layer
        "counts", "edges" (histogram of the post-ReLU activations over one
        range per pass, 0 to the 99.9th percentile of its widest layer, larger
        values in the last bin), "std", "zero_fraction" and "verdict" (from
        :func:`fastnn.diagnostics.health`).
    """
    model, Xb = pass_model(key, k), pass_batch(X, k)
    hidden = _hidden_outputs(model, Xb)
    verdicts, _ = _health(model, Xb)
    hi = max(float(np.percentile(h, 99.9)) for h in hidden)
    hi = hi if np.isfinite(hi) and hi > 0 else 1.0
    out = []
    for h, verdict in zip(hidden, verdicts):
        counts, edges = np.histogram(np.clip(h, 0.0, hi), bins=bins, range=(0.0, hi))
        out.append({"counts": counts, "edges": edges, "std": float(np.std(h)),
                    "zero_fraction": float(np.mean(h == 0)), "verdict": verdict})
    return out


def random_passes(n_passes=N_PASSES):
    """:func:`forward_pass` for every init and ``k`` in ``range(n_passes)``: {key: [pass, ...]}."""
    X = pass_inputs()
    return {key: [forward_pass(X, key, k) for k in range(n_passes)] for key, *_ in INITS}


def run(out_dir, quick=False):
    """Run this experiment: print its numbers, write its figure into ``out_dir``.

    Parameters
    ----------
    out_dir : str
        Folder for the PNG (created if missing).
    quick : bool
        Fewer epochs/steps/samples, for tests.

    Returns
    -------
    dict
        The numbers behind the figure (see the module docstring); "figures"
        lists the PNG paths and "split" states the data split.
    """
    d = C.digits()
    X, _ = C.standardize(d)
    if quick:
        X = X[:300]
    depths = (5, 10)
    res = {"split": d.description, "width": WIDTH, "n_samples": len(X), "depths": depths}
    hists = {}
    for depth in depths:
        sizes = [X.shape[1]] + [WIDTH] * depth + [10]
        for key, label, init, std in INITS:
            model = C.mlp(sizes, init=init, std=std, rng=C.SEED)
            hidden = _hidden_outputs(model, X)
            var = np.array([float(np.var(h)) for h in hidden])
            verdicts, summary = _health(model, X)
            res[(key, depth)] = {"variance": var, "verdicts": verdicts, "summary": summary,
                                 "std": np.sqrt(var)}
            if depth == 5:
                hists[key] = hidden

    sym_epochs = 5 if quick else 30
    data = C.breast_cancer()
    res["symmetry"] = {act: _symmetry(data, act, sym_epochs) for act in ("relu", "sigmoid")}
    res["symmetry_epochs"] = sym_epochs
    he_model = C.mlp([30, 16, 16, 2], init="he", rng=C.SEED)
    he_w = C.weights(he_model)[0]

    plt = C.pyplot()
    from matplotlib.ticker import NullLocator
    figs = []
    # Variance per layer (bars, log scale) for both depths, plus the symmetry picture.
    fig = plt.figure(figsize=(13, 9))
    gs = fig.add_gridspec(2, 3, width_ratios=[1.2, 1.2, 1])
    for row, depth in enumerate(depths):
        ax = fig.add_subplot(gs[row, :2])
        n = depth
        width = 0.8 / (len(INITS) - 1)
        for j, (key, label, _, _) in enumerate(INITS[1:]):
            v = res[(key, depth)]["variance"]
            bad = sum(x != "healthy" for x in res[(key, depth)]["verdicts"])
            ax.bar(np.arange(1, n + 1) + (j - 1.5) * width, v, width,
                   color=C.COLORS[key],
                   label=f"{label}: {'healthy' if not bad else f'{bad}/{n} layers unhealthy'}")
        ax.set_yscale("log")
        # 40 decades of minor ticks make matplotlib crawl; majors suffice.
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(np.arange(1, n + 1))
        ax.set_xlabel("hidden layer")
        ax.set_ylabel("activation variance")
        ax.set_title(f"{depth}-layer ReLU net: activation variance per layer "
                     f"(zeros: exactly 0 everywhere, not drawn)")
        ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  frameon=False)
    for row, (name, w) in enumerate((("zero init + sigmoid, after training",
                                      res["symmetry"]["sigmoid"]["first_layer_weight"]),
                                     ("He init, before training", he_w))):
        ax = fig.add_subplot(gs[row, 2])
        lim = np.max(np.abs(w)) or 1.0
        im = ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(f"layer-1 weights: {name}", fontsize=10)
        ax.set_xlabel("input feature")
        ax.set_ylabel("hidden unit")
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    figs.append(C.save(fig, out_dir, "exp3_init_variance.png"))

    # Histograms: one row per init, one column per layer of the 5-layer net.
    fig, axes = plt.subplots(len(INITS), 5, figsize=(13, 10))
    for i, (key, label, _, _) in enumerate(INITS):
        r = res[(key, 5)]
        # One x range per row (the widest layer's 99.9th percentile): a row
        # then shows the spread shrinking or growing from layer to layer.
        hi = max(float(np.percentile(h, 99.9)) for h in hists[key]) or 1.0
        for j in range(5):
            ax = axes[i, j]
            a = hists[key][j].ravel()
            verdict = r["verdicts"][j]
            color = C.COLORS.get(verdict, "#7f7f7f")
            ax.hist(np.clip(a, 0.0, hi), bins=40, range=(0.0, hi), color=color, alpha=0.8)
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlim(0.0, hi)
            ax.set_title(f"layer {j + 1}: {verdict}\nstd {r['std'][j]:.2g}, "
                         f"{np.mean(a == 0):.0%} zeros", fontsize=9, color=color)
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
            if j == 0:
                ax.set_ylabel(label, fontsize=10)
    fig.suptitle("Activation histograms (after ReLU) of a 5-layer net, one forward pass of "
                 "standardized digits\n(same x range along a row; green = healthy, "
                 "red = collapsed/exploded, verdicts from fastnn.diagnostics.health)", y=1.0)
    fig.tight_layout()
    figs.append(C.save(fig, out_dir, "exp3_init_histograms.png"))
    res["figures"] = figs

    lines = [d.description + f"; {len(X)} standardized training images pushed through",
             f"ReLU networks of width {WIDTH}; variance of each hidden layer's output:"]
    for depth in depths:
        lines.append(f"{depth} layers:")
        for key, label, _, _ in INITS:
            r = res[(key, depth)]
            v = r["variance"]
            ratio = v[-1] / v[0] if v[0] > 0 else float("nan")
            show = np.array2string(v, formatter={"float_kind": lambda x: f"{x:.2g}"},
                                   max_line_width=200)
            lines.append(f"  {label:20s} {show}  last/first {ratio:.3g}  "
                         f"verdicts {','.join(x[:3] for x in r['verdicts'])}")
            lines.append(f"  {'':20s} health: {r['summary']}")
    for act, s in res["symmetry"].items():
        lines.append(f"zero init + {act} after {sym_epochs} epochs on breast cancer: hidden weight "
                     f"norm {s['hidden_weight_norm']:.3g}, max difference between hidden units "
                     f"{s['max_unit_difference']:.3g} (activations {s['max_activation_difference']:.3g}), "
                     f"val accuracy {s['val_accuracy']:.1%}")
    lines.append("-> zero init: every hidden unit gets the same gradient and stays identical "
                 "(ReLU: all dead at 0; sigmoid: they move, but as one unit)")
    lines += [f"figure: {p}" for p in figs]
    C.report(3, TITLE, lines)
    for s in res["symmetry"].values():
        del s["first_layer_weight"]
    return res
