"""The Bokeh figures, controls and data of the interactive lesson page.

One builder per section; each returns the section's Bokeh models (by name:
the page's JavaScript finds them with ``get_model_by_name``), its controls as
HTML and the data its JavaScript needs.  Colours follow the PNG figures
(``_common.COLORS``).
"""
import numpy as np

from . import _common as C
from . import exp3_init

GREY = "#bbbbbb"
VERDICT_COLORS = {"healthy": C.COLORS["healthy"], "collapsed": C.COLORS["collapsed"],
                  "exploded": C.COLORS["exploded"]}
HIST_FLOOR = 1e-5  # bottom of the log-scale histograms (fraction of activations)


def _fig(title, width=430, height=300, **kw):
    from bokeh.plotting import figure
    p = figure(title=title, width=width, height=height, toolbar_location=None, **kw)
    p.title.text_font_size = "11px"
    return p


def _legend(p, location="top_right"):
    p.legend.location = location
    p.legend.label_text_font_size = "10px"
    p.legend.background_fill_alpha = 0.7
    p.legend.click_policy = "hide"


def _slider(anchor, label, n, value, values_text):
    """An HTML range input over ``n`` positions, with a live label."""
    return (f'<label for="{anchor}-slider">{label}</label> '
            f'<input type="range" id="{anchor}-slider" min="0" max="{n - 1}" step="1" '
            f'value="{value}"> <span class="value" id="{anchor}-value">{values_text}</span>')


# -- 1. poor vs good setup ------------------------------------------------------

def setup_section(res):
    from bokeh.models import Range1d
    figs = {}
    # One loss axis for both, as in the PNG: the poor net's curve then reads as flat.
    top = 1.05 * max(float(np.max(res[k][c])) for k in ("poor", "good")
                     for c in ("train_loss", "val_loss"))
    y_range = Range1d(0.0, top)
    for key in ("poor", "good"):
        r = res[key]
        p = _fig(f"{r['label']}: validation accuracy {r['val_accuracy']:.1%}",
                 x_axis_label="epoch", y_axis_label="cross-entropy loss", y_range=y_range)
        p.title.text_color = C.COLORS[key]
        ep = np.arange(1, len(r["train_loss"]) + 1)
        p.line(ep, r["train_loss"], color=C.COLORS["train"], line_width=2, legend_label="train")
        p.line(ep, r["val_loss"], color=C.COLORS["val"], line_width=2, line_dash="dashed",
               legend_label="validation")
        _legend(p)
        figs[key] = p
    from bokeh.layouts import row
    models = {"setup-figs": row(figs["poor"], figs["good"])}
    return models, {"controls": "", "figures": list(models)}, {}


# -- 2. raw vs normalized -------------------------------------------------------

def _contour_fig(key, r, names, step=3):
    cg = r["contour"]
    steps = (f"converged in {r['steps']} steps" if r["steps"] is not None
             else f"not converged in {len(r['path']) - 1} steps")
    c, h = cg["centre"], cg["half"]
    p = _fig(f"{key}: condition number {r['kappa']:.3g}, {steps}", width=440,
             height=540, x_range=(c[0] - h, c[0] + h), y_range=(c[1] - h, c[1] + h),
             x_axis_label=f"w1 x std(x1), x1 = {names[0]}",
             y_axis_label=f"w2 x std(x2), x2 = {names[1]}", match_aspect=True)
    from bokeh.palettes import Viridis256
    levels = cg["levels"]
    colors = [Viridis256[int(i)] for i in np.linspace(0, 230, len(levels))]
    p.contour(cg["w1"][::step], cg["w2"][::step], cg["loss"][::step, ::step], levels,
              line_color=colors, line_width=1)
    path = cg["path"]
    p.line(path[:, 0], path[:, 1], color=C.COLORS["poor"], line_width=1.5,
           legend_label=f"gradient descent, lr = 1/lambda_max = {r['lr']:.2g}")
    p.scatter(path[:, 0], path[:, 1], color=C.COLORS["poor"], size=3)
    p.scatter([cg["w_star"][0]], [cg["w_star"][1]], marker="star", size=16, color="black",
              legend_label="minimum")
    p.scatter([0], [0], size=7, color="black", legend_label="start (0, 0)")
    _legend(p)
    p.add_layout(p.legend[0], "below")  # inside, it would hide the start of the path
    return p


def normalization_section(res):
    from bokeh.layouts import row
    figs = [_contour_fig(k, res[k], res["features"]) for k in ("raw", "normalized")]
    models = {"normalization-figs": row(*figs)}
    return models, {"controls": "", "figures": list(models)}, {}


# -- 3. initialization -----------------------------------------------------------

def _pass_data(layer):
    counts = np.asarray(layer["counts"], dtype=np.float64)
    frac = counts / max(counts.sum(), 1.0)
    edges = layer["edges"]
    return {"left": edges[:-1], "right": edges[1:],
            "top": np.where(frac > 0, frac, HIST_FLOOR)}


def _layer_title(j, layer):
    return (f"layer {j + 1}: {layer['verdict']}, std {layer['std']:.2g}, "
            f"{layer['zero_fraction']:.0%} zeros")


def _init_grid(passes):
    from bokeh.models import BasicTickFormatter, ColumnDataSource, Range1d
    rows = []
    for key, label, _, _ in exp3_init.INITS:
        row = []
        for j, layer in enumerate(passes[key][0]):
            d = _pass_data(layer)
            color = VERDICT_COLORS[layer["verdict"]]
            src = ColumnDataSource(dict(d, color=[color] * len(d["left"])),
                                   name=f"init-src-{key}-{j}")
            p = _fig(_layer_title(j, layer), width=245, height=170, y_axis_type="log",
                     x_range=Range1d(0.0, float(d["right"][-1])),
                     y_range=Range1d(HIST_FLOOR, 1.5), name=f"init-fig-{key}-{j}")
            p.title.text_color = color
            p.title.text_font_size = "10px"
            p.quad(left="left", right="right", top="top", bottom=HIST_FLOOR, source=src,
                   fill_color="color", line_color="color", fill_alpha=0.8)
            p.xaxis.major_label_text_font_size = "8px"
            p.xaxis.ticker.desired_num_ticks = 4
            p.xaxis.formatter = BasicTickFormatter(precision=1, power_limit_high=3,
                                                   power_limit_low=-2)
            p.yaxis.major_label_text_font_size = "8px"
            if j == 0:
                p.yaxis.axis_label = label
            row.append(p)
        rows.append(row)
    from bokeh.layouts import gridplot
    return gridplot(rows, toolbar_location=None)


def _variance_fig(res):
    p = _fig("10-layer ReLU net: activation variance per layer (zeros: exactly 0, not drawn)",
             width=640, height=320, y_axis_type="log", x_axis_label="hidden layer",
             y_axis_label="activation variance")
    for key, label, _, _ in exp3_init.INITS[1:]:
        v = res[(key, 10)]["variance"]
        layers = np.arange(1, len(v) + 1)
        p.line(layers, v, color=C.COLORS[key], line_width=2, legend_label=label)
        p.scatter(layers, v, color=C.COLORS[key], size=6)
    _legend(p)
    p.add_layout(p.legend[0], "right")  # outside: the lines fill the whole plot
    return p


def init_section(res, passes):
    buttons = "".join(
        f'<label class="radio"><input type="radio" name="init-scheme" value="{key}"'
        f'{" checked" if key == "he" else ""}> {label}</label>'
        for key, label, _, _ in exp3_init.INITS)
    controls = (f'{buttons} <button id="init-forward">Forward Pass</button> '
                f'<span class="value" id="init-value">pass 1 of {len(passes["he"])} '
                f'for every init</span>')
    models = {"init-grid": _init_grid(passes), "init-variance": _variance_fig(res)}
    section = {"controls": controls, "figures": ["init-grid"], "side": ["init-variance"]}
    js = {"keys": [k for k, *_ in exp3_init.INITS],
          "labels": [lab for _, lab, *_ in exp3_init.INITS],
          "colors": VERDICT_COLORS, "floor": HIST_FLOOR,
          "passes": {key: [[dict(_pass_data(layer), verdict=layer["verdict"],
                                 title=_layer_title(j, layer))
                            for j, layer in enumerate(p)] for p in passes[key]]
                     for key in passes}}
    return models, section, js


# -- 4. batch norm ----------------------------------------------------------------

def _bn_histograms(res):
    edges = res["histogram_edges"]
    out = {"left": edges[:-1], "right": edges[1:]}
    for k in ("plain", "batchnorm"):
        out[k] = res[k]["histograms"]
        out[k + "_mean"], out[k + "_std"] = res[k]["mean"], res[k]["std"]
    return out


def batchnorm_section(res):
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource, Span
    h = _bn_histograms(res)
    top = 1.1 * max(float(np.max(c)) for k in ("plain", "batchnorm") for c in h[k])
    figs = []
    for k, name, color in (("plain", "without batch norm", C.COLORS["poor"]),
                           ("batchnorm", "with batch norm", C.COLORS["good"])):
        src = ColumnDataSource({"left": h["left"], "right": h["right"], "top": h[k][0]},
                               name=f"bn-src-{k}")
        p = _fig(f"{name}: epoch 0, mean {h[k + '_mean'][0]:+.2f}, std {h[k + '_std'][0]:.2f}",
                 width=400, y_range=(0, top), name=f"bn-fig-{k}",
                 x_axis_label="pre-activation (input to the ReLU of hidden layer 2)",
                 y_axis_label="density")
        p.quad(left="left", right="right", top="top", bottom=0, source=src,
               fill_color=color, line_color=color, fill_alpha=0.6)
        p.add_layout(Span(location=0, dimension="height", line_color="black", line_width=1))
        figs.append(p)
    figs.append(_bn_drift_fig(res))
    models = {"bn-figs": row(*figs)}
    epochs = res["epochs"]
    controls = _slider("bn", "epoch", epochs + 1, 0, f"epoch 0 of {epochs}")
    return models, {"controls": controls, "figures": list(models)}, dict(h, epochs=epochs)


def _bn_drift_fig(res):
    from bokeh.models import Span
    p = _fig("drift over training: mean +- std", width=380, x_axis_label="epoch",
             y_axis_label="pre-activation")
    for k, name, color in (("plain", "without BN", C.COLORS["poor"]),
                           ("batchnorm", "with BN", C.COLORS["good"])):
        m, s = res[k]["mean"], res[k]["std"]
        ep = np.arange(len(m))
        p.varea(ep, m - s, m + s, color=color, alpha=0.15)
        p.line(ep, m, color=color, line_width=2, legend_label=name)
    p.add_layout(Span(location=0, dimension="height", line_color="#555555",
                      line_dash="dashed", name="bn-epoch-span"))
    _legend(p, "bottom_left")
    return p


# -- 5. L2 ------------------------------------------------------------------------

def _l2_fit_fig(res, k0):
    from bokeh.models import ColumnDataSource
    p = _fig("the fitted function for the chosen lambda (faint: the others)", width=430,
             y_range=(-2.5, 3.5), x_axis_label="body-mass index (standardized)",
             y_axis_label="disease progression (standardized)")
    p.scatter(*res["val_points"], size=4, color=GREY, legend_label="validation patients")
    p.scatter(*res["train_points"], size=6, color="black", legend_label="training patients")
    for c in res["curves"]:
        p.line(res["grid"], c, color=GREY, line_width=1, alpha=0.6)
    src = ColumnDataSource({"x": res["grid"], "y": res["curves"][k0]}, name="l2-fit-src")
    p.line("x", "y", source=src, color=C.COLORS["poor"], line_width=3,
           legend_label="fit at the chosen lambda")
    _legend(p, "bottom_right")
    return p


def _l2_curves_fig(res, k0):
    from bokeh.models import ColumnDataSource
    ep = np.arange(1, len(res["train_loss_curves"][k0]) + 1)
    src = ColumnDataSource({"epoch": ep, "train": res["train_loss_curves"][k0],
                            "val": res["val_loss_curves"][k0]}, name="l2-curves-src")
    top = 1.2 * max(float(np.max(v)) for v in res["val_loss_curves"] + res["train_loss_curves"])
    p = _fig("loss over training (data term only)", width=330, y_range=(0, min(top, 3.0)),
             x_axis_label="epoch", y_axis_label="mean squared error")
    p.line("epoch", "train", source=src, color=C.COLORS["train"], line_width=2,
           legend_label="train")
    p.line("epoch", "val", source=src, color=C.COLORS["val"], line_width=2,
           legend_label="validation")
    _legend(p)
    return p


def _l2_sweep_fig(res, k0):
    from bokeh.models import ColumnDataSource, LogAxis, LogScale, Range1d
    lam = [f"{x:g}" for x in res["lambdas"]]
    xs = np.arange(len(lam))
    top = 1.3 * max(float(np.max(res["train_loss"])), float(np.max(res["val_loss"])))
    p = _fig("train loss rises with lambda; validation has a sweet spot", width=360,
             x_axis_label="lambda (L2 strength)", y_axis_label="mean squared error",
             y_range=Range1d(0.0, top))
    p.line(xs, res["train_loss"], color=C.COLORS["train"], line_width=2, legend_label="train MSE")
    p.line(xs, res["val_loss"], color=C.COLORS["val"], line_width=2,
           legend_label="validation MSE")
    w = np.asarray(res["weight_sq_norm"])
    p.extra_y_ranges = {"w": Range1d(float(w.min()) / 3, float(w.max()) * 3)}
    p.extra_y_scales = {"w": LogScale()}
    p.add_layout(LogAxis(y_range_name="w", axis_label="sum of squared weights"), "right")
    p.line(xs, w, y_range_name="w", color="#555555", line_dash="dotted", line_width=2,
           legend_label="sum w^2")
    src = ColumnDataSource({"x": [k0, k0], "y": [res["train_loss"][k0], res["val_loss"][k0]],
                            "c": [C.COLORS["train"], C.COLORS["val"]]}, name="l2-mark-src")
    p.scatter("x", "y", color="c", source=src, size=12)
    p.xaxis.ticker = list(xs)
    p.xaxis.major_label_overrides = {int(i): s for i, s in zip(xs, lam)}
    _legend(p, "top_center")
    return p


def l2_section(res):
    from bokeh.layouts import row
    k0 = int(np.argmin(res["val_loss"]))
    models = {"l2-figs": row(_l2_fit_fig(res, k0), _l2_curves_fig(res, k0),
                             _l2_sweep_fig(res, k0))}
    n = len(res["lambdas"])
    controls = _slider("l2", "lambda", n, k0, f"lambda = {res['lambdas'][k0]:g}")
    js = {k: res[k] for k in ("lambdas", "train_loss", "val_loss", "weight_sq_norm", "curves",
                              "train_loss_curves", "val_loss_curves")}
    return models, {"controls": controls, "figures": list(models)}, js


# -- 6. dropout -------------------------------------------------------------------

def _net_layout(sizes):
    xs, ys, layer, unit = [], [], [], []
    for i, n in enumerate(sizes):
        for u in range(n):
            xs.append(float(i))
            ys.append((n - 1) / 2.0 - u)
            layer.append(i)
            unit.append(u)
    return np.array(xs), np.array(ys), np.array(layer), np.array(unit)


def _network_fig(sizes):
    from bokeh.models import ColumnDataSource
    xs, ys, layer, unit = _net_layout(sizes)
    start = np.cumsum((0,) + tuple(sizes))
    x0, y0, x1, y1 = [], [], [], []
    for i in range(len(sizes) - 1):
        for a in range(start[i], start[i + 1]):
            for b in range(start[i + 1], start[i + 2]):
                x0.append(xs[a]), y0.append(ys[a]), x1.append(xs[b]), y1.append(ys[b])
    edges = ColumnDataSource({"x0": x0, "y0": y0, "x1": x1, "y1": y1,
                              "alpha": [0.5] * len(x0)}, name="drop-edges-src")
    fill = [C.COLORS["good"] if 0 < l < len(sizes) - 1 else "#444444" for l in layer]
    nodes = ColumnDataSource({"x": xs, "y": ys, "layer": layer, "unit": unit, "fill": fill},
                             name="drop-nodes-src")
    h = max(sizes) / 2.0 + 0.7
    p = _fig("no dropout yet: press Drop", width=430, height=330, x_range=(-0.5, 3.5),
             y_range=(-h, h), name="drop-fig")
    p.segment("x0", "y0", "x1", "y1", source=edges, color="#888888", line_alpha="alpha")
    p.scatter("x", "y", source=nodes, size=28, fill_color="fill", line_color="#222222")
    p.axis.visible = False
    p.grid.visible = False
    names = ["input"] + [f"hidden {i}" for i in range(1, len(sizes) - 1)] + ["output"]
    p.text(x=list(range(len(sizes))), y=[-h + 0.2] * len(sizes), text=names,
           text_align="center", text_font_size="11px")
    return p


def _dropout_curves_fig(res):
    p = _fig("150 noisy-label digits: loss curves", width=420, y_axis_type="log",
             x_axis_label="epoch", y_axis_label="cross-entropy")
    for key, color, name in (("plain", C.COLORS["poor"], "no dropout"),
                             ("dropout", C.COLORS["good"], f"dropout p={res['p']}")):
        r = res[key]
        ep = np.arange(1, len(r["train_loss_curve"]) + 1)
        p.line(ep, r["train_loss_curve"], color=color, line_dash="dashed", line_width=2,
               legend_label=f"{name}: train")
        p.line(ep, r["val_loss_curve"], color=color, line_width=2,
               legend_label=f"{name}: validation (gap {r['loss_gap']:.2f})")
    _legend(p, "bottom_left")
    return p


def dropout_section(res, sizes):
    from bokeh.layouts import row
    models = {"dropout-figs": row(_network_fig(sizes), _dropout_curves_fig(res))}
    controls = (_slider("drop", "drop probability p", 10, 5, "p = 0.5")
                + ' <button id="drop-button">Drop</button> '
                  '<span class="value" id="drop-seed">seed: none yet</span>')
    js = {"sizes": list(sizes), "p_values": [i / 10 for i in range(10)],
          "keep_color": C.COLORS["good"], "drop_color": GREY}
    return models, {"controls": controls, "figures": list(models)}, js


# -- 7. losses --------------------------------------------------------------------

def loss_shapes(score):
    """CE, hinge, MSE and MAE of the scores (s, 0, 0) with class 0 correct, from fastnn's kernels.

    MSE and MAE compare the scores with the one-hot target (1, 0, 0), averaged
    over the three classes.
    """
    import fastnn.functional as F
    s = np.asarray(score, dtype=np.float64)
    scores = np.zeros((len(s), 3))
    scores[:, 0] = s
    target = np.zeros(len(s), dtype=np.int64)
    onehot = np.zeros_like(scores)
    onehot[:, 0] = 1.0
    return {"cross_entropy": F.cross_entropy(scores, target, reduction="none"),
            "hinge": F.hinge_loss(scores, target, reduction="none"),
            "mse": F.mse_loss(scores, onehot, reduction="none").mean(axis=1),
            "mae": F.l1_loss(scores, onehot, reduction="none").mean(axis=1)}


LOSS_STYLE = (("cross_entropy", "softmax cross-entropy", C.COLORS["good"]),
              ("hinge", "multiclass hinge (margin 1)", C.COLORS["poor"]),
              ("mse", "MSE vs one-hot", C.COLORS["xavier"]),
              ("mae", "MAE vs one-hot", C.COLORS["small"]))


def _loss_fig(s, shapes, k0):
    from bokeh.models import ColumnDataSource, Span
    p = _fig("loss vs the correct-class score (the two other scores are 0)", width=460,
             height=330, x_axis_label="score of the correct class",
             y_axis_label="loss", y_range=(0, 8))
    for key, label, color in LOSS_STYLE:
        p.line(s, shapes[key], color=color, line_width=2.5, legend_label=label)
    p.add_layout(Span(location=float(s[k0]), dimension="height", line_color="black",
                      line_dash="dashed", name="loss-span"))
    src = ColumnDataSource({"x": [float(s[k0])] * 4,
                            "y": [float(shapes[k][k0]) for k, _, _ in LOSS_STYLE],
                            "c": [c for _, _, c in LOSS_STYLE]}, name="loss-mark-src")
    p.scatter("x", "y", color="c", source=src, size=10)
    _legend(p)
    return p


def _outlier_fig(res):
    pts = res["points"]
    x, y, idx = pts["x"], pts["y"], pts["outliers"]
    clean = np.ones(len(x), bool)
    clean[idx] = False
    p = _fig("regression: MSE is pulled by outliers, MAE is not", width=420, height=330,
             x_axis_label=f"{pts['names'][0]} (standardized)",
             y_axis_label=f"{pts['names'][1]} (standardized)")
    p.scatter(x[clean], y[clean], size=4, color="#999999", legend_label="training data")
    p.scatter(x[idx], y[idx], size=8, marker="x", color=C.COLORS["poor"],
              legend_label=f"outliers ({len(idx)})")
    g = np.array([x.min(), x.max()])
    a, b = res["mse"]["clean_fit"]
    p.line(g, a * g + b, color="black", line_dash="dotted", legend_label="fit without outliers")
    for kind, color in (("mse", C.COLORS["poor"]), ("mae", C.COLORS["good"])):
        a, b = res[kind]["outlier_fit"]
        p.line(g, a * g + b, color=color, line_width=2,
               legend_label=f"{kind.upper()} fit with outliers (moved {res[kind]['shift']:.2f})")
    _legend(p, "top_left")
    return p


def losses_section(res):
    from bokeh.layouts import row
    s = np.asarray(res["score"])
    shapes = loss_shapes(s)
    k0 = int(np.argmin(np.abs(s - 0.0)))
    models = {"losses-figs": row(_loss_fig(s, shapes, k0), _outlier_fig(res))}
    table = "".join(f'<td style="color:{c}">{label}: <b id="loss-value-{k}">'
                    f'{shapes[k][k0]:.3f}</b></td>' for k, label, c in LOSS_STYLE)
    controls = (_slider("loss", "correct-class score", len(s), k0, f"score = {s[k0]:+.2f}")
                + f'<table class="values"><tr>{table}</tr></table>')
    js = dict(shapes, score=s, keys=[k for k, _, _ in LOSS_STYLE])
    return models, {"controls": controls, "figures": list(models)}, js


# -- 8. learning rate ---------------------------------------------------------------

def _smooth(y, window):
    y = np.asarray(y, dtype=np.float64)
    if len(y) < window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def _lr_runs(sweep, window):
    spe = sweep["steps_per_epoch"]
    runs = []
    for lr, r in zip(sweep["rates"], sweep["runs"]):
        y = r["step_loss"] if r["diverged"] is not None else _smooth(r["step_loss"], window)
        y = np.where(np.isfinite(y), y, np.nan)
        runs.append({"lr": lr, "x": np.arange(len(y)) / spe, "y": np.clip(y, 1e-3, 1e3),
                     "diverged": r["diverged"], "val_accuracy": r["final_val_accuracy"],
                     "val_loss": r["final_val_loss"]})
    return runs


def _lr_figs(res, runs, k0, window):
    from bokeh.models import ColumnDataSource
    sched = np.asarray(res["schedule"])
    ps = _fig(f"warmup + cosine: peak {res['peak_lr']:g}, warmup {res['warmup_steps']} steps",
              width=330, x_axis_label="optimizer step", y_axis_label="learning rate")
    ps.line(np.arange(len(sched)), sched, color=C.COLORS["he"], line_width=2)
    p = _fig("training loss: the chosen rate (bold), warmup + cosine (green), others faint",
             width=560, height=330, y_axis_type="log", y_range=(1e-2, 1e2),
             x_axis_label="epoch", y_axis_label=f"training loss (moving average, {window} steps)")
    for r in runs:
        p.line(r["x"], r["y"], color=GREY, line_width=1)
    wc = res["warmup + cosine"]
    y = _smooth(wc["step_loss"], window)
    p.line(np.arange(len(y)) / res["steps_per_epoch"], y, color=C.COLORS["he"], line_width=2,
           legend_label=f"warmup + cosine: val acc {wc['final_val_accuracy']:.1%}")
    src = ColumnDataSource({"x": runs[k0]["x"], "y": runs[k0]["y"]}, name="lr-src")
    p.line("x", "y", source=src, color=C.COLORS["poor"], line_width=3,
           legend_label="the chosen constant rate")
    _legend(p, "bottom_left")
    return ps, p


def lr_section(res, sweep):
    from bokeh.layouts import row
    window = max(1, sweep["steps_per_epoch"] // 4)
    runs = _lr_runs(sweep, window)
    k0 = list(sweep["rates"]).index(0.05) if 0.05 in sweep["rates"] else 0
    models = {"lr-figs": row(*_lr_figs(res, runs, k0, window))}
    controls = _slider("lr", "learning rate", len(runs), k0, f"lr = {runs[k0]['lr']:g}")
    return models, {"controls": controls, "figures": list(models)}, {"runs": runs}


def build_all(data, dropout_net):
    """Every section's models, controls and data: {"models", "sections", "js_data"}."""
    res = data["results"]
    builders = {"setup": lambda: setup_section(res[1]),
                "normalization": lambda: normalization_section(res[2]),
                "init": lambda: init_section(res[3], data["passes"]),
                "batchnorm": lambda: batchnorm_section(res[4]),
                "l2": lambda: l2_section(res[5]),
                "dropout": lambda: dropout_section(res[6], dropout_net),
                "losses": lambda: losses_section(res[7]),
                "lr": lambda: lr_section(res[8], data["lr_sweep"])}
    out = {"models": {}, "sections": {}, "js_data": {}}
    for anchor, build in builders.items():
        models, section, js = build()
        out["models"].update(models)
        out["sections"][anchor] = section
        out["js_data"][anchor] = js
    return out
