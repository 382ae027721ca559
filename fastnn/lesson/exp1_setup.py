"""1. Poor setup vs good setup: the same network, two sets of decisions.

Both networks have 2 hidden layers of 16 ReLU units.  Poor: raw features
(0.05 to 4254) and all-zero weights.  Good: standardized features and He init.
"""
import numpy as np

from . import _common as C

LR = 3e-3
TITLE = "Poor setup vs good setup (same 30-16-16-2 ReLU network)"


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

    data = C.breast_cancer()
    Xs_tr, Xs_va = C.standardize(data)
    epochs = 20 if quick else 40
    setups = {
        "poor": dict(X=(data.X_train, data.X_val), init="zeros",
                     label="poor: raw data + zero init"),
        "good": dict(X=(Xs_tr, Xs_va), init="he",
                     label="good: standardized + He init"),
    }
    res = {"split": data.description, "epochs": epochs,
           "majority_fraction": float(C.majority_fraction(data.y_val))}
    for key, s in setups.items():
        model = C.mlp([30, 16, 16, 2], init=s["init"], rng=C.SEED)
        opt = optim.Adam(model.parameters(), lr=LR)
        hist = train.fit(model, s["X"][0], data.y_train, loss="cross_entropy",
                         optimizer=opt, epochs=epochs, batch_size=32,
                         validation=(s["X"][1], data.y_val), shuffle=True,
                         rng=C.SEED, progress=False)
        val_loss, val_acc = C.loss_and_accuracy(model, s["X"][1], data.y_val)
        _, train_acc = C.loss_and_accuracy(model, s["X"][0], data.y_train)
        res[key] = {"train_loss": C.series(hist, "train_loss"),
                    "val_loss": C.series(hist, "val_loss"),
                    "final_val_loss": val_loss, "val_accuracy": val_acc,
                    "train_accuracy": train_acc, "label": s["label"]}

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key in zip(axes, ("poor", "good")):
        r = res[key]
        ep = np.arange(1, epochs + 1)
        ax.plot(ep, r["train_loss"], color=C.COLORS["train"], label="train loss")
        ax.plot(ep, r["val_loss"], color=C.COLORS["val"], ls="--", label="validation loss")
        ax.set_title(f"{r['label']}\nvalidation accuracy {r['val_accuracy']:.1%}",
                     color=C.COLORS[key])
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0].set_ylabel("cross-entropy loss")
    axes[0].axhline(0.0, color="k", lw=0.5)
    fig.suptitle("Same architecture, different setup (breast cancer; majority "
                 f"class = {res['majority_fraction']:.1%} of validation)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    res["figures"] = [C.save(fig, out_dir, "exp1_setup.png")]

    C.report(1, TITLE, [
        data.description,
        f"Adam lr={LR:g}, batch 32, {epochs} epochs, seed {C.SEED}",
        f"majority class (always 'benign'): {res['majority_fraction']:.1%} of validation",
        *(f"{res[k]['label']:32s} final train loss {res[k]['train_loss'][-1]:.4f}  "
          f"val loss {res[k]['final_val_loss']:.4f}  val accuracy {res[k]['val_accuracy']:.1%}"
          for k in ("poor", "good")),
        "-> zero init leaves every hidden unit dead: the poor net can only learn the "
        "class prior (its output bias), so it predicts the majority class",
        f"figure: {res['figures'][0]}",
    ])
    return res
