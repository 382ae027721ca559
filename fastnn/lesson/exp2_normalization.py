"""2. Raw vs normalized data: the shape of the loss landscape.

A 2-weight linear model s = w1 * x1 + w2 * x2 (no bias), fitted with the mean
squared error to targets +-1, on two breast-cancer features of very different
scale: mean smoothness (0.05 to 0.16) and mean area (143 to 2501).  Full-batch
gradient descent with the step 1 / lambda_max (the largest step the steepest
direction tolerates comfortably) on raw and on standardized features.
"""
import numpy as np

from . import _common as C

TITLE = "Raw vs normalized data (2-weight linear model, MSE)"
FEATURES = (4, 3)  # mean smoothness, mean area
TOL = 1e-6          # converged: excess loss below TOL of the starting excess


def _loss_grad(X, t, w):
    import fastnn.functional as F
    loss, dpred = F.mse_loss_with_grad(X @ w, t)
    return float(loss), X.T @ dpred


def _descend(X, t, lr, loss_star, max_steps):
    w = np.zeros(2, dtype=X.dtype)
    loss0, g = _loss_grad(X, t, w)
    path, losses, steps = [w.copy()], [loss0], None
    for k in range(1, max_steps + 1):
        w = w - lr * g
        loss, g = _loss_grad(X, t, w)
        path.append(w.copy())
        losses.append(loss)
        if not np.isfinite(loss) or loss > 1e6 * max(loss0, 1.0):
            break
        if loss - loss_star <= TOL * (loss0 - loss_star):
            steps = k
            break
    return {"path": np.array(path), "losses": np.array(losses), "steps": steps,
            "remaining_excess": float((losses[-1] - loss_star) / (loss0 - loss_star))}


def contour_grid(r, t, n=300):
    """The loss surface around a descent path, for a contour plot.

    Both panels are drawn in the same units, weight x feature std (the change
    in the score per standard deviation of the feature), with equal axes, so
    their shapes are comparable; for standardized data this is w itself.

    Parameters
    ----------
    r : dict
        One problem of :func:`run`: "X", "path", "w_star", "loss_star".
    t : ndarray
        The targets.
    n : int
        Grid points per axis.

    Returns
    -------
    dict
        "w1", "w2" (axes, scaled units), "loss" (n x n, rows along w2),
        "levels" (12 contour levels, geometric above the minimum), "scale"
        (feature stds), "path" and "w_star" (scaled), "centre", "half".
    """
    X = r["X"]
    scale = X.std(axis=0)
    path, us = r["path"] * scale, r["w_star"] * scale
    pts = np.vstack([path, us[None], np.zeros((1, 2))])
    centre = 0.5 * (pts.min(0) + pts.max(0))
    half = 0.65 * np.max(pts.max(0) - pts.min(0)) + 0.05
    w1 = np.linspace(centre[0] - half, centre[0] + half, n)
    w2 = np.linspace(centre[1] - half, centre[1] + half, n)
    g1, g2 = np.meshgrid(w1, w2)
    W = np.stack([g1.ravel() / scale[0], g2.ravel() / scale[1]])
    Z = np.mean((X @ W - t[:, None]) ** 2, axis=0).reshape(g1.shape)
    levels = r["loss_star"] + (Z.max() - r["loss_star"]) * np.geomspace(1e-3, 0.8, 12)
    return {"w1": w1, "w2": w2, "loss": Z, "levels": levels, "scale": scale,
            "path": path, "w_star": us, "centre": centre, "half": half}


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
    data = C.breast_cancer()
    names = [data.feature_names[i] for i in FEATURES]
    raw = data.X_train[:, FEATURES]
    Xs, _ = C.standardize(data)
    norm = Xs[:, FEATURES]
    t = (2.0 * data.y_train - 1.0).astype(C.DTYPE)
    max_steps = 1000 if quick else 20000
    res = {"split": data.description, "features": names, "max_steps": max_steps, "tol": TOL}
    for key, X in (("raw", raw), ("normalized", norm)):
        H = 2.0 * X.T @ X / len(X)                 # Hessian of the MSE
        eig = np.linalg.eigvalsh(H)
        w_star = np.linalg.solve(X.T @ X, X.T @ t)
        loss_star, _ = _loss_grad(X, t, w_star)
        lr = 1.0 / eig[-1]
        run_ = _descend(X, t, lr, loss_star, max_steps)
        # Predicted by the condition number: the excess shrinks by (1 - 1/kappa)^2 per step.
        kappa = eig[-1] / eig[0]
        predicted = np.log(TOL) / (2.0 * np.log1p(-1.0 / kappa))
        res[key] = dict(run_, lr=float(lr), eig=eig, kappa=float(kappa),
                        w_star=w_star, loss_star=loss_star, X=X,
                        predicted_steps=float(predicted))
    for key in ("raw", "normalized"):
        res[key]["contour"] = contour_grid(res[key], t)
    # The normalized problem's step on raw data: diverges at once.
    blow = _descend(raw, t, res["normalized"]["lr"], res["raw"]["loss_star"], 20)
    res["raw_with_normalized_lr_diverges"] = bool(
        blow["steps"] is None and (not np.isfinite(blow["losses"][-1])
                                   or blow["losses"][-1] > 1e3 * blow["losses"][0]))
    res["raw_with_normalized_lr_loss"] = float(blow["losses"][-1])

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, key in zip(axes, ("raw", "normalized")):
        r = res[key]
        cg = r["contour"]
        scale, path, us = cg["scale"], cg["path"], cg["w_star"]
        centre, half = cg["centre"], cg["half"]
        g1, g2 = np.meshgrid(cg["w1"], cg["w2"])
        ax.contour(g1, g2, cg["loss"], levels=cg["levels"], cmap="viridis", linewidths=0.9)
        ax.plot(path[:, 0], path[:, 1], ".-", color=C.COLORS["poor"], ms=4, lw=1.2,
                label=f"gradient descent, lr = 1/lambda_max = {r['lr']:.2g}")
        ax.plot(*us, "*", color="k", ms=13, label="minimum")
        ax.plot(0, 0, "o", color="k", ms=5, label="start (0, 0)")
        ax.set_aspect("equal")
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        steps = (f"converged in {r['steps']} steps" if r["steps"] is not None
                 else f"not converged after {len(r['path']) - 1} steps\n"
                      f"({r['remaining_excess']:.0%} of the excess loss left)")
        ax.set_title(f"{key} features: condition number {r['kappa']:.3g}\n{steps}")
        ax.set_xlabel(f"w1 x std(x1)   (x1 = {names[0]}, std {scale[0]:.3g})")
        ax.set_ylabel(f"w2 x std(x2)   (x2 = {names[1]}, std {scale[1]:.3g})")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("Loss contours of the model s = w1*x1 + w2*x2 (MSE, breast cancer): raw features "
                 "make a long narrow valley", y=0.99)
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp2_normalization.png")]

    lines = [data.description, f"features: x1 = {names[0]}, x2 = {names[1]}; targets +-1; "
             f"converged = excess loss below {TOL:g} of its start"]
    for key in ("raw", "normalized"):
        r = res[key]
        steps = (f"{r['steps']} steps" if r["steps"] is not None
                 else f"NOT converged in {max_steps} steps "
                      f"({r['remaining_excess']:.1%} of excess left)")
        lines.append(f"{key:10s} feature scales {np.abs(r['X']).mean(0).round(3)}  "
                     f"Hessian eigenvalues {r['eig'][0]:.3g}, {r['eig'][1]:.3g}  "
                     f"kappa {r['kappa']:.3g}  lr {r['lr']:.3g}  -> {steps} "
                     f"(theory ~{r['predicted_steps']:.3g})")
    lines.append(f"raw data with the normalized problem's lr {res['normalized']['lr']:.3g}: "
                 f"loss {res['raw_with_normalized_lr_loss']:.3g} after "
                 f"{len(blow['losses']) - 1} steps (diverges: "
                 f"{res['raw_with_normalized_lr_diverges']})")
    lines.append(f"figure: {res['figures'][0]}")
    C.report(2, TITLE, lines)
    for key in ("raw", "normalized"):
        del res[key]["X"]
    return res
