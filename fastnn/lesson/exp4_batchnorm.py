"""4. Batch norm: activation drift over epochs with and without it.

Two 64-64-64-10 networks on standardized digits, trained with plain SGD;
one has BatchNorm1d before each ReLU.  After every epoch the validation
images are pushed through (eval mode) and the pre-activation of the second
hidden layer (what enters its ReLU) is recorded.
"""
import numpy as np

from . import _common as C

TITLE = "Batch norm (pre-activations of hidden layer 2 over training, digits)"
LR = 0.05


def _preactivation(model, X, batchnorm):
    """Input to the second hidden ReLU: the output of Linear 2 (or its batch norm).

    Measured as the network sees it in training (batch statistics, the
    validation images as one batch); the running statistics are restored so
    the probe does not change the model.
    """
    from fastnn import nn
    saved = [(b, b.copy()) for _, b in model.named_buffers()]
    model.train()
    x, outs = X, []
    for layer in model:
        x = layer.forward(x)
        outs.append(x)
    for b, copy in saved:
        b[...] = copy
    want = nn.BatchNorm1d if batchnorm else nn.Linear
    idx = [i for i, layer in enumerate(model) if isinstance(layer, want)][1]
    return np.asarray(outs[idx], dtype=np.float64)


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
    from fastnn import optim, train

    d = C.digits()
    Xtr, Xva = C.standardize(d)
    epochs = 6 if quick else 30
    res = {"split": d.description, "epochs": epochs, "lr": LR}
    for key, bn in (("plain", False), ("batchnorm", True)):
        model = C.mlp([64, 64, 64, 10], batchnorm=bn, rng=C.SEED, fuse=False)
        opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        a = _preactivation(model, Xva, bn)
        means, stds, snaps = [a.mean()], [a.std()], {0: a.ravel()}
        val_acc = []
        for ep in range(1, epochs + 1):
            # One epoch per call: the optimizer (and its momentum) carries over.
            train.fit(model, Xtr, d.y_train, optimizer=opt, epochs=1, batch_size=32,
                      rng=C.SEED + ep, progress=False)
            a = _preactivation(model, Xva, bn)
            means.append(a.mean())
            stds.append(a.std())
            snaps[ep] = a.ravel()
            val_acc.append(C.loss_and_accuracy(model, Xva, d.y_val)[1])
        res[key] = {"mean": np.array(means), "std": np.array(stds),
                    "val_accuracy": np.array(val_acc), "snapshots": snaps}

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    show = sorted({0, 1, epochs // 3, 2 * epochs // 3, epochs})
    cmap = plt.get_cmap("viridis")
    lo = min(np.percentile(res[k]["snapshots"][e], 0.5) for k in ("plain", "batchnorm") for e in show)
    hi = max(np.percentile(res[k]["snapshots"][e], 99.5) for k in ("plain", "batchnorm") for e in show)
    for ax, key, name in ((axes[0], "plain", "without batch norm"),
                          (axes[1], "batchnorm", "with batch norm")):
        for i, e in enumerate(show):
            ax.hist(res[key]["snapshots"][e], bins=60, range=(lo, hi), density=True,
                    histtype="step", lw=1.5, color=cmap(i / max(1, len(show) - 1)),
                    label=f"epoch {e}")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"{name}: pre-activation distribution\n"
                     f"mean {res[key]['mean'][0]:+.2f} -> {res[key]['mean'][-1]:+.2f}, "
                     f"std {res[key]['std'][0]:.2f} -> {res[key]['std'][-1]:.2f}")
        ax.set_xlabel("pre-activation value (input to ReLU of hidden layer 2)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    ax = axes[2]
    ep = np.arange(epochs + 1)
    for key, color, name in (("plain", C.COLORS["poor"], "without BN"),
                             ("batchnorm", C.COLORS["good"], "with BN")):
        m, s = res[key]["mean"], res[key]["std"]
        ax.plot(ep, m, color=color, label=f"{name}: mean")
        ax.fill_between(ep, m - s, m + s, color=color, alpha=0.15, label=f"{name}: mean +- std")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("pre-activation")
    ax.set_title("drift over training")
    ax.legend(fontsize=8)
    fig.suptitle(f"Batch norm keeps activations centered (digits, SGD lr={LR} momentum 0.9)",
                 y=1.02)
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp4_batchnorm.png")]

    lines = [d.description, f"64-64-64-10 ReLU net, He init, SGD lr={LR} momentum 0.9, "
             f"batch 32, {epochs} epochs; statistics over the validation images "
             "(as one batch)"]
    for key, name in (("plain", "without BN"), ("batchnorm", "with BN")):
        r = res[key]
        lines.append(f"{name:10s} mean per epoch {np.array2string(r['mean'][::max(1, epochs // 6)], precision=2)}"
                     f"  std {np.array2string(r['std'][::max(1, epochs // 6)], precision=2)}"
                     f"  max |mean| {np.max(np.abs(r['mean'])):.3f}  final val accuracy "
                     f"{r['val_accuracy'][-1]:.1%}")
        r["max_abs_mean"] = float(np.max(np.abs(r["mean"])))
        r["std_range"] = (float(r["std"].min()), float(r["std"].max()))
        r["drift"] = float(np.max(np.abs(r["mean"] - r["mean"][0])))
    lines.append(f"figure: {res['figures'][0]}")
    C.report(4, TITLE, lines)
    # Keep the distributions as histograms (what the interactive page draws),
    # not the raw pre-activations of every epoch.
    _histograms(res)
    for key in ("plain", "batchnorm"):
        del res[key]["snapshots"]
    return res


def _histograms(res, bins=60):
    """Per-epoch densities over one common range: res["histogram_edges"], res[key]["histograms"]."""
    snaps = [s for k in ("plain", "batchnorm") for s in res[k]["snapshots"].values()]
    lo = min(float(np.percentile(s, 0.5)) for s in snaps)
    hi = max(float(np.percentile(s, 99.5)) for s in snaps)
    edges = np.linspace(lo, hi, bins + 1)
    res["histogram_edges"] = edges
    for k in ("plain", "batchnorm"):
        snap = res[k]["snapshots"]
        res[k]["histograms"] = np.array([
            np.histogram(np.clip(snap[e], lo, hi), bins=edges, density=True)[0]
            for e in sorted(snap)])
