"""6. Dropout: the train/validation gap on a small training set.

A 64-128-128-10 ReLU network on only 150 digits, 20% of whose labels are
replaced by a wrong class (the noise of a small hand-labelled set: what a
network that memorizes learns from), with and without inverted dropout
(p = 0.5 after each hidden layer).  The gap is measured in eval mode (dropout
off) on both sets after training; validation labels are the clean ones.
"""
import numpy as np

from . import _common as C

TITLE = "Dropout (64-128-128-10 net, 150 training digits, 20% label noise)"
P = 0.5
N_TRAIN = 150
WIDTH = 128
LABEL_NOISE = 0.2


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

    d = C.digits(n_train=N_TRAIN)
    Xtr, Xva = C.standardize(d)
    rng = np.random.default_rng(C.SEED)
    noisy = rng.choice(N_TRAIN, int(LABEL_NOISE * N_TRAIN), replace=False)
    ytr = d.y_train.copy()
    ytr[noisy] = (ytr[noisy] + rng.integers(1, 10, len(noisy))) % 10  # always a wrong class
    epochs = 40 if quick else 100
    res = {"split": d.description, "epochs": epochs, "p": P, "n_noisy": len(noisy)}
    runs = (("plain", 0.0), ("dropout", P))
    models = [C.mlp([64, WIDTH, WIDTH, 10], dropout=p, rng=C.SEED) for _, p in runs]
    opts = [optim.Adam(model.parameters(), lr=1e-3) for model in models]
    hists = train.fit_many(models, Xtr, ytr, opts, epochs=epochs, batch_size=32,
                           validation=(Xva, d.y_val), rng=C.SEED)
    for (key, _), model, hist in zip(runs, models, hists):
        tr_loss, tr_acc = C.loss_and_accuracy(model, Xtr, ytr)
        va_loss, va_acc = C.loss_and_accuracy(model, Xva, d.y_val)
        res[key] = {"train_loss_curve": C.series(hist, "train_loss"),
                    "val_loss_curve": C.series(hist, "val_loss"),
                    "train_loss": tr_loss, "val_loss": va_loss,
                    "train_accuracy": tr_acc, "val_accuracy": va_acc,
                    "loss_gap": va_loss - tr_loss, "accuracy_gap": tr_acc - va_acc}

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    ep = np.arange(1, epochs + 1)
    for key, color, name in (("plain", C.COLORS["poor"], "no dropout"),
                             ("dropout", C.COLORS["good"], f"dropout p={P}")):
        r = res[key]
        ax.plot(ep, r["train_loss_curve"], color=color, ls="--",
                label=f"{name}: train (as trained)")
        ax.plot(ep, r["val_loss_curve"], color=color, label=f"{name}: validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title("loss curves")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = ["no dropout", f"dropout p={P}"]
    x = np.arange(2)
    tr = [res[k]["train_loss"] for k in ("plain", "dropout")]
    va = [res[k]["val_loss"] for k in ("plain", "dropout")]
    ax.bar(x - 0.18, tr, 0.36, color=C.COLORS["train"], label="train loss (eval mode)")
    ax.bar(x + 0.18, va, 0.36, color=C.COLORS["val"], label="validation loss")
    for i, k in enumerate(("plain", "dropout")):
        r = res[k]
        ax.text(i, max(tr[i], va[i]) * 1.05,
                f"gap {r['loss_gap']:.3f}\nacc {r['train_accuracy']:.0%} / {r['val_accuracy']:.1%}",
                ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, names)
    ax.set_ylim(0, max(va) * 1.4)
    ax.set_ylabel("cross-entropy after training")
    ax.set_title("after training: train (noisy labels) vs validation\n(acc = train / val)")
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Dropout narrows the generalization gap ({len(Xtr)} training digits, "
                 f"{len(noisy)} of them mislabelled; {len(Xva)} clean validation digits)", y=1.02)
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp6_dropout.png")]

    lines = [d.description, f"{len(noisy)} of the {N_TRAIN} training labels replaced by a "
             f"wrong class (seed {C.SEED}); validation labels untouched",
             f"64-{WIDTH}-{WIDTH}-10 ReLU net, He init, Adam lr=1e-3, batch 32, "
             f"{epochs} epochs; losses in eval mode after training (train = the noisy labels)"]
    for key, name in (("plain", "no dropout"), ("dropout", f"dropout p={P}")):
        r = res[key]
        lines.append(f"{name:14s} train loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}  "
                     f"gap {r['loss_gap']:.4f}  train acc {r['train_accuracy']:.1%}  "
                     f"val acc {r['val_accuracy']:.1%}")
    lines.append(f"figure: {res['figures'][0]}")
    C.report(6, TITLE, lines)
    return res
