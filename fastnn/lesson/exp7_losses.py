"""7. Loss functions: cross-entropy vs hinge; MSE vs MAE with outliers.

Left: three classes, the correct class's score swept from -4 to 4 while the
two others stay at 0; the losses come from fastnn's kernels
(F.cross_entropy, F.hinge_loss, reduction="none").
Right: a straight line fitted to real data (breast cancer: mean radius ->
mean perimeter, standardized) by gradient descent on F.mse_loss_with_grad or
F.l1_loss_with_grad, before and after 10% of the training targets are
replaced by gross outliers.
"""
import numpy as np

from . import _common as C

TITLE = "Loss functions (cross-entropy vs hinge; MSE vs MAE with outliers)"
OUTLIER_FRACTION = 0.10


def _fit_line(x, y, kind, steps):
    """Gradient descent on a*x + b with the MSE or (subgradient) MAE kernel."""
    import fastnn.functional as F
    grad_fn = F.mse_loss_with_grad if kind == "mse" else F.l1_loss_with_grad
    a = b = 0.0
    for k in range(steps):
        pred = a * x + b
        _, dpred = grad_fn(pred, y)
        # The MAE's subgradient has constant size: a decaying step lets it settle.
        lr = 0.1 if kind == "mse" else 0.5 / np.sqrt(k + 1.0)
        a -= lr * float(dpred @ x)
        b -= lr * float(dpred.sum())
    return a, b


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
    import fastnn.functional as F

    # -- classification losses against the correct-class score
    s = np.linspace(-4, 4, 161)
    scores = np.zeros((len(s), 3))
    scores[:, 0] = s
    target = np.zeros(len(s), dtype=np.int64)
    ce = F.cross_entropy(scores, target, reduction="none")
    hinge = F.hinge_loss(scores, target, reduction="none")
    res = {"score": s, "cross_entropy": np.asarray(ce), "hinge": np.asarray(hinge)}

    # -- regression with outliers
    data = C.breast_cancer()
    names = (data.feature_names[0], data.feature_names[2])
    xtr, xva = data.X_train[:, 0], data.X_val[:, 0]
    ytr, yva = data.X_train[:, 2], data.X_val[:, 2]
    mx, sx, my, sy = xtr.mean(), xtr.std(), ytr.mean(), ytr.std()
    xtr, xva, ytr, yva = (xtr - mx) / sx, (xva - mx) / sx, (ytr - my) / sy, (yva - my) / sy
    rng = np.random.default_rng(C.SEED)
    n_out = int(round(OUTLIER_FRACTION * len(xtr)))
    idx = rng.choice(len(xtr), n_out, replace=False)
    ydirty = ytr.copy()
    ydirty[idx] = ytr[idx] + rng.uniform(6.0, 10.0, n_out)  # gross recording errors, one side
    steps = 500 if quick else 3000
    fits = {}
    for kind in ("mse", "mae"):
        for clean, yy in (("clean", ytr), ("outliers", ydirty)):
            a, b = _fit_line(xtr, yy, kind, steps)
            fits[(kind, clean)] = (a, b)
    for kind in ("mse", "mae"):
        (a0, b0), (a1, b1) = fits[(kind, "clean")], fits[(kind, "outliers")]
        res[kind] = {"clean_fit": (a0, b0), "outlier_fit": (a1, b1),
                     "shift": float(np.hypot(a1 - a0, b1 - b0)),
                     "clean_val_mae": float(F.l1_loss(a1 * xva + b1, yva))}
    res["split"] = data.description
    res["n_outliers"] = n_out
    res["points"] = {"x": xtr, "y": ydirty, "outliers": np.sort(idx), "names": names}

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    ax = axes[0]
    ax.plot(s, ce, color=C.COLORS["good"], lw=2, label="softmax cross-entropy")
    ax.plot(s, hinge, color=C.COLORS["poor"], lw=2, label="multiclass hinge (margin 1)")
    ax.axvline(1.0, color="#999999", ls=":", lw=1)
    ax.text(1.05, ax.get_ylim()[1] * 0.9 if ax.get_ylim()[1] else 8,
            "hinge is 0 once the score beats\nthe others (0) by the margin",
            fontsize=8, color="#555555")
    ax.set_xlabel("score of the correct class (the two other scores are 0)")
    ax.set_ylabel("loss")
    ax.set_title("classification losses vs the correct-class score")
    ax.legend()
    ax = axes[1]
    clean_mask = np.ones(len(xtr), bool)
    clean_mask[idx] = False
    ax.scatter(xtr[clean_mask], ydirty[clean_mask], s=6, color="#999999", label="training data")
    ax.scatter(xtr[idx], ydirty[idx], s=14, color=C.COLORS["poor"], marker="x",
               label=f"outliers ({n_out}, {OUTLIER_FRACTION:.0%})")
    g = np.linspace(xtr.min(), xtr.max(), 2)
    a, b = fits[("mse", "clean")]
    ax.plot(g, a * g + b, color="k", lw=1, ls=":", label="fit without outliers")
    for kind, color in (("mse", C.COLORS["poor"]), ("mae", C.COLORS["good"])):
        a, b = fits[(kind, "outliers")]
        ax.plot(g, a * g + b, color=color, lw=2,
                label=f"{kind.upper()} fit with outliers (moved {res[kind]['shift']:.2f})")
    ax.set_xlabel(f"{names[0]} (standardized)")
    ax.set_ylabel(f"{names[1]} (standardized)")
    ax.set_title("regression: MSE is pulled by outliers, MAE is not")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp7_losses.png")]

    pick = [0, 60, 80, 100, 120, 160]
    lines = ["scores (c, 0, 0) with class 0 correct: "
             + "  ".join(f"c={s[i]:+.1f}: CE {ce[i]:.3f} hinge {hinge[i]:.3f}" for i in pick),
             data.description + f"; {names[0]} -> {names[1]}, standardized; "
             f"{n_out} training targets shifted up by 6-10 std",
             f"gradient descent on a*x + b, {steps} steps"]
    for kind in ("mse", "mae"):
        r = res[kind]
        lines.append(f"{kind.upper()}: clean fit a={r['clean_fit'][0]:.3f} b={r['clean_fit'][1]:+.3f}; "
                     f"with outliers a={r['outlier_fit'][0]:.3f} b={r['outlier_fit'][1]:+.3f}; "
                     f"moved {r['shift']:.3f}; MAE on clean validation {r['clean_val_mae']:.3f}")
    lines.append(f"figure: {res['figures'][0]}")
    C.report(7, TITLE, lines)
    return res
