"""5. L2 regularization: from overfitting to underfitting.

A 1-64-64-1 network fits a small, noisy, real relation (diabetes: body-mass
index -> disease progression, 40 training patients) with the mean squared
error plus lambda * sum(w^2) over its weights, for several lambda.
"""
import numpy as np

from . import _common as C

TITLE = "L2 regularization (1-64-64-1 network, diabetes bmi -> progression)"
LAMBDAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


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

    d = C.diabetes_bmi()
    xtr, xva = C.standardize(d)
    mu, sd = d.y_train.mean(), d.y_train.std()
    ytr, yva = (d.y_train - mu) / sd, (d.y_val - mu) / sd
    epochs = 600 if quick else 3000
    grid = np.linspace(min(xtr.min(), xva.min()), max(xtr.max(), xva.max()), 300)[:, None]
    res = {"split": d.description, "lambdas": LAMBDAS, "epochs": epochs}
    runs = []
    for lam in LAMBDAS:
        model = C.mlp([1, 64, 64, 1], activation="tanh", init="xavier", rng=C.SEED)
        runs.append({"model": model, "optimizer": optim.Adam(model.parameters(), lr=1e-2),
                     "l2": lam})
    fits = C.fit_sweep(runs, xtr, ytr, loss="mse", epochs=epochs, batch_size=len(xtr),
                       shuffle=False, rng=C.SEED, progress=False, validation=(xva, yva))
    rows = []
    for lam, r, (hist, _) in zip(LAMBDAS, runs, fits):
        model = r["model"]
        rows.append({
            "lambda": lam,
            "train_loss": train.evaluate(model, xtr, ytr, loss="mse")["loss"],
            "val_loss": train.evaluate(model, xva, yva, loss="mse")["loss"],
            "weight_sq_norm": C.weight_sq_norm(model),
            "curve": train.predict(model, grid)[:, 0],
            "train_loss_curve": C.series(hist, "train_loss"),
            "val_loss_curve": C.series(hist, "val_loss"),
        })
    for key in ("train_loss", "val_loss", "weight_sq_norm"):
        res[key] = np.array([r[key] for r in rows])
    res["best_lambda"] = LAMBDAS[int(np.argmin(res["val_loss"]))]
    # What the interactive page draws: every fit and its loss curves, and the data.
    res["grid"] = grid[:, 0]
    for key in ("curve", "train_loss_curve", "val_loss_curve"):
        res[key + "s"] = [r[key] for r in rows]
    res["train_points"] = (xtr[:, 0], ytr[:, 0])
    res["val_points"] = (xva[:, 0], yva[:, 0])

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    ax.scatter(xva[:, 0], yva[:, 0], s=8, color="#bbbbbb", label="validation patients")
    ax.scatter(xtr[:, 0], ytr[:, 0], s=22, color="k", zorder=3, label="training patients (40)")
    cmap = plt.get_cmap("plasma")
    for i, r in enumerate(rows):
        ax.plot(grid[:, 0], r["curve"], color=cmap(i / len(rows)), lw=1.8,
                label=f"lambda = {r['lambda']:g}")
    ax.set_ylim(-2.5, 3.5)
    ax.set_xlabel("body-mass index (standardized)")
    ax.set_ylabel("disease progression (standardized)")
    ax.set_title("the fitted function: wiggly (overfit) -> smooth -> flat (underfit)")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    ax = axes[1]
    xs = np.arange(len(LAMBDAS))
    ax.plot(xs, res["train_loss"], "o-", color=C.COLORS["train"], label="train MSE")
    ax.plot(xs, res["val_loss"], "s-", color=C.COLORS["val"], label="validation MSE")
    ax.set_xticks(xs, [f"{lam:g}" for lam in LAMBDAS])
    ax.set_xlabel("lambda (L2 strength)")
    ax.set_ylabel("mean squared error (data term only)")
    b = int(np.argmin(res["val_loss"]))
    ax.annotate("best validation", (xs[b], res["val_loss"][b]), xytext=(0, -28),
                textcoords="offset points", ha="center", arrowprops={"arrowstyle": "->"})
    ax2 = ax.twinx()
    ax2.plot(xs, res["weight_sq_norm"], "^:", color="#555555", label="sum of squared weights")
    ax2.set_yscale("log")
    ax2.set_ylabel("sum of squared weights")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
    ax.set_title("train loss rises with lambda; validation loss has a sweet spot")
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp5_l2.png")]

    lines = [d.description,
             f"1-64-64-1 tanh net, Xavier init, Adam lr=1e-2, full batch, {epochs} epochs, "
             "penalty lambda * sum(w^2) over the weights (fit(..., l2=lambda))"]
    for r in rows:
        lines.append(f"lambda {r['lambda']:<7g} train MSE {r['train_loss']:.4f}  "
                     f"val MSE {r['val_loss']:.4f}  gap {r['val_loss'] - r['train_loss']:+.4f}  "
                     f"sum w^2 {r['weight_sq_norm']:.3g}")
    lines.append(f"best validation at lambda = {res['best_lambda']:g}")
    lines.append(f"figure: {res['figures'][0]}")
    C.report(5, TITLE, lines)
    return res
