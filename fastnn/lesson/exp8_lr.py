"""8. The learning rate: warmup + cosine decay, and too high / too low / good.

A 64-64-64-10 ReLU network on standardized digits trained with plain SGD
(no momentum) at a constant learning rate that is too high, too low, or
good, and with a linear warmup followed by cosine decay.
"""
import numpy as np

from . import _common as C

TITLE = "Learning rate (SGD on digits; warmup + cosine)"
RATES = (("too high", 5.0), ("too low", 1e-4), ("good", 0.05))
PEAK = 0.2


#: The learning rates of the interactive page's slider (constant, plain SGD).
SWEEP = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 1.0, 5.0)


def _train(runs, d, Xtr, Xva, epochs, batch):
    """Train one fresh net per (name, lr, schedule); the numbers of each run."""
    from fastnn import optim, train
    spe = train.steps_per_epoch(len(Xtr), batch)
    jobs = []
    for _, lr, schedule in runs:
        model = C.mlp([64, 64, 64, 10], rng=C.SEED)
        jobs.append({"model": model, "optimizer": optim.SGD(model.parameters(), lr=lr),
                     "schedule": schedule})
    fits = C.fit_sweep(jobs, Xtr, d.y_train, epochs=epochs, batch_size=batch,
                       validation=(Xva, d.y_val), rng=C.SEED, progress=False)
    out = []
    for (_, lr, _), (hist, diverged) in zip(runs, fits):
        steps = np.asarray(hist["step_loss"], dtype=np.float64)
        val = C.series(hist, "val_loss")
        acc = C.series(hist, "val_accuracy")
        ok = diverged is None and len(acc) > 0
        out.append({"lr": lr, "step_loss": steps, "train_loss": C.series(hist, "train_loss"),
                    "val_loss": val, "diverged": diverged,
                    "final_train_loss": float(np.mean(steps[-spe:])) if len(steps) else np.inf,
                    "final_val_accuracy": float(acc[-1]) if ok else 0.0,
                    "final_val_loss": float(val[-1]) if ok else np.inf})
    return out


def sweep(quick=False, rates=SWEEP):
    """Train the experiment's network at each constant learning rate.

    Parameters
    ----------
    quick : bool
        The quick run's epochs (as :func:`run`).
    rates : sequence of float > 0
        Learning rates of plain SGD.

    Returns
    -------
    dict
        "rates", "epochs", "steps_per_epoch" and "runs": one dict per rate
        with "step_loss", "val_loss", "diverged" ((epoch, step) or None),
        "final_val_accuracy", "final_val_loss" (as :func:`run` reports them).
    """
    from fastnn import train
    d = C.digits()
    Xtr, Xva = C.standardize(d)
    epochs, batch = (8 if quick else 40), 32
    runs = [(f"lr {lr:g}", lr, None) for lr in rates]
    return {"rates": tuple(rates), "epochs": epochs, "split": d.description,
            "steps_per_epoch": train.steps_per_epoch(len(Xtr), batch),
            "runs": _train(runs, d, Xtr, Xva, epochs, batch)}


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
    epochs = 8 if quick else 40
    batch = 32
    steps_per_epoch = train.steps_per_epoch(len(Xtr), batch)
    total = epochs * steps_per_epoch
    warmup = max(1, total // 10)
    sched = optim.warmup_cosine(PEAK, warmup_steps=warmup, total_steps=total, end_lr=PEAK * 0.01)
    res = {"split": d.description, "epochs": epochs, "warmup_steps": warmup,
           "total_steps": total, "peak_lr": PEAK}
    runs = [(name, lr, None) for name, lr in RATES] + [("warmup + cosine", PEAK, sched)]
    for (name, lr, _), r in zip(runs, _train(runs, d, Xtr, Xva, epochs, batch)):
        res[name] = r
    res["steps_per_epoch"] = steps_per_epoch
    res["schedule"] = np.array([sched(k) for k in range(total + steps_per_epoch)])

    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0]
    st = np.arange(total + steps_per_epoch)
    ax.plot(st, [sched(int(k)) for k in st], color=C.COLORS["good"], lw=2)
    ax.axvline(warmup, color="#999999", ls=":", lw=1)
    ax.axvline(total, color="#999999", ls=":", lw=1)
    ax.text(warmup, PEAK * 1.02, f" end of warmup (step {warmup})", fontsize=8)
    ax.text(total, PEAK * 0.5, " total_steps:\n flat after", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"warmup_cosine(peak_lr={PEAK}, warmup_steps={warmup}, total_steps={total})")
    ax = axes[1]
    colors = {"too high": C.COLORS["poor"], "too low": "#9467bd", "good": C.COLORS["good"],
              "warmup + cosine": C.COLORS["he"]}
    window = max(1, steps_per_epoch // 4)
    top = 3.0 * max(float(res[n]["step_loss"][0]) for n, _, _ in runs)
    finite = np.concatenate([res[n]["step_loss"] for n, _, _ in runs if res[n]["diverged"] is None])
    bottom = 0.5 * float(np.min(finite[finite > 0]))
    for name, lr, _ in runs:
        r = res[name]
        y = r["step_loss"]
        label = f"{name} (lr {lr:g})" if name != "warmup + cosine" else f"{name} (peak {PEAK:g})"
        if r["diverged"] is not None:
            # Too few steps to smooth: draw them raw, clipped to the axis, and
            # mark where the loss became NaN/inf.
            x = np.arange(len(y)) / steps_per_epoch
            ax.plot(x, np.clip(y, bottom, top), ".-", color=colors[name], lw=1.5,
                    label=label + f": loss NaN/inf at step {len(y) + 1}")
            ax.plot(len(y) / steps_per_epoch, top, "X", color=colors[name], ms=12)
            continue
        if len(y) >= window:
            y = np.convolve(y, np.ones(window) / window, mode="valid")
        label += f": val acc {r['final_val_accuracy']:.1%}"
        ax.plot(np.arange(len(y)) / steps_per_epoch, y, color=colors[name], lw=1.5, label=label)
    ax.set_ylim(bottom, top * 1.3)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"training loss (moving average, {window} steps)")
    ax.set_title("too high: divergence or chaos; too low: barely moves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    res["figures"] = [C.save(fig, out_dir, "exp8_lr.png")]

    lines = [d.description, f"64-64-64-10 ReLU net, He init, SGD without momentum, batch {batch}, "
             f"{epochs} epochs ({total} steps)",
             f"schedule: lr(0)={sched(0):g}, lr({warmup})={sched(warmup):g}, "
             f"lr({total // 2 + warmup // 2})={sched(total // 2 + warmup // 2):.4g}, "
             f"lr({total})={sched(total):g}, lr({total * 2})={sched(total * 2):g}"]
    for name, lr, _ in runs:
        r = res[name]
        state = (f"DIVERGED at epoch {r['diverged'][0]}, step {r['diverged'][1]}"
                 if r["diverged"] is not None else
                 f"final train loss {r['final_train_loss']:.4f}  val loss {r['final_val_loss']:.4f}  "
                 f"val acc {r['final_val_accuracy']:.1%}")
        lines.append(f"{name:16s} lr {lr:<8g} {state}")
    lines.append(f"figure: {res['figures'][0]}")
    C.report(8, TITLE, lines)
    return res
