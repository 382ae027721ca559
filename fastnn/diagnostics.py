"""Activation-health diagnostics: is each layer's signal alive, dead or blowing up?

The lesson's payoff is watching activations stay healthy or collapse, layer
by layer.  :func:`activation_stats` gives the numbers behind the histograms;
:func:`health` turns them into a verdict per layer, plus the gradient norms
of one backward pass, and a one-line summary.

Both run the layers of a :class:`fastnn.nn.Sequential` one at a time
(unfused), so a Linear's statistics are those of its pre-activation output
and the following activation layer reports the post-activation output.
Neither changes the model: train/eval modes, batch-norm running statistics,
dropout generators and parameter gradients are restored afterwards.

Examples
--------
>>> import numpy as np
>>> from fastnn import nn, diagnostics
>>> model = nn.Sequential(nn.Linear(8, 32, rng=0), nn.ReLU(), nn.Linear(32, 4, rng=1))
>>> X = np.random.default_rng(0).standard_normal((256, 8)).astype(np.float32)
>>> diagnostics.health(model, X).verdicts
['healthy', 'healthy', 'healthy']
"""
from dataclasses import dataclass, field

import numpy as np

from fastnn._loss_table import LOSS_TABLE
from fastnn._validation import check_choice, integer
from fastnn.nn import Linear, Module, Sequential, Sigmoid, Tanh
from fastnn.train import as_inputs, as_targets

__all__ = ["activation_stats", "health", "Health", "COLLAPSED_RATIO", "EXPLODED_RATIO",
           "DEAD_FRACTION", "SATURATED_FRACTION", "SATURATION"]

#: A layer whose output std is below this fraction of the input's std is "collapsed".
COLLAPSED_RATIO = 0.1
#: A layer whose output std is above this multiple of the input's std is "exploded".
EXPLODED_RATIO = 10.0
#: A layer with at least this fraction of exact zeros (dead ReLUs) is "collapsed".
DEAD_FRACTION = 0.99
#: A tanh/sigmoid layer with more than this fraction saturated is "exploded".
SATURATED_FRACTION = 0.5
#: Saturation: |tanh| > 0.99, sigmoid < 0.01 or > 0.99.
SATURATION = 0.99


def _layers(model):
    if isinstance(model, Sequential):
        return list(model.layers)
    if isinstance(model, Module):
        return [model]
    raise TypeError(f"model must be a fastnn.nn.Module, got {type(model).__name__}")


def _saturating_kind(layer):
    if isinstance(layer, Tanh) or (isinstance(layer, Linear) and layer.activation == "tanh"):
        return "tanh"
    if isinstance(layer, Sigmoid) or (isinstance(layer, Linear) and layer.activation == "sigmoid"):
        return "sigmoid"
    return None


def _inputs(model, X):
    X = as_inputs(model, X)
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    return X


def _stats(layer, i, y, bins):
    kind = _saturating_kind(layer)
    finite = y[np.isfinite(y)]
    all_finite = finite.size == y.size
    with np.errstate(invalid="ignore", over="ignore"):  # inf in, NaN statistics out, quietly
        mean = float(np.mean(y, dtype=np.float64))
        std = float(np.std(y, dtype=np.float64))
    if kind == "tanh":
        saturated = float(np.mean(np.abs(y) > SATURATION))
    elif kind == "sigmoid":
        saturated = float(np.mean((y < 1 - SATURATION) | (y > SATURATION)))
    else:
        saturated = 0.0
    if finite.size:
        counts, edges = np.histogram(finite, bins=bins)
    else:
        counts, edges = np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    return {"index": i, "name": type(layer).__name__, "mean": mean, "std": std,
            "zero_fraction": float(np.mean(y == 0)), "saturated_fraction": saturated,
            "finite": all_finite, "histogram": (counts, edges)}


def activation_stats(model, X, bins=50, training=False):
    """Statistics of every layer's output for the inputs X.

    Parameters
    ----------
    model : fastnn.nn.Sequential (or a single layer)
    X : array_like, shape (N, in_features)
        Converted to the model's dtype.
    bins : int >= 1
        Histogram bins (over the finite values, range min..max).
    training : bool
        Run in training mode (batch statistics, dropout on).  Default: eval
        mode.  Either way the model is left exactly as it was.

    Returns
    -------
    list of dict, one per layer, with keys
        "index", "name" (the layer's class), "mean", "std" (over all elements,
        float64), "zero_fraction" (exact zeros: dead ReLUs), "saturated_fraction"
        (tanh: |y| > 0.99; sigmoid: y < 0.01 or > 0.99; 0 for other layers),
        "finite" (no NaN/inf), "histogram" (counts, bin edges).
    """
    bins = integer(bins, "bins", low=1)
    layers = _layers(model)
    X = _inputs(model, X)
    out = []
    with model.preserved(training):
        x = X
        for i, layer in enumerate(layers):
            x = layer.forward(x)
            out.append(_stats(layer, i, x, bins))
    return out


@dataclass
class Health:
    """The result of :func:`health`.

    Attributes
    ----------
    layers : list of dict
        :func:`activation_stats` entries plus "ratio" (output std / input
        std), "verdict", "grad_norm" (L2 norm of the layer's parameter
        gradients, NaN for a layer without parameters) and "input_grad_norm"
        (L2 norm of the gradient flowing out of the layer to its input).
    input_std : float
    summary : str
        One line, e.g. ``"healthy: all 5 layers (std ratio 0.58-1.4; weight grad norm 0.012-0.3)"``.
    """

    layers: list = field(default_factory=list)
    input_std: float = 1.0
    summary: str = ""

    @property
    def verdicts(self):
        return [layer["verdict"] for layer in self.layers]

    @property
    def healthy(self):
        """True when every layer is healthy."""
        return all(v == "healthy" for v in self.verdicts)

    def table(self):
        """A multi-line table: one row per layer."""
        rows = [f"{'#':>3} {'layer':<12} {'mean':>10} {'std':>10} {'ratio':>9} {'zeros':>6} "
                f"{'sat':>6} {'grad':>9}  verdict"]
        for d in self.layers:
            rows.append(f"{d['index']:>3} {d['name']:<12} {d['mean']:>10.3g} {d['std']:>10.3g} "
                        f"{d['ratio']:>9.3g} {d['zero_fraction']:>6.2f} "
                        f"{d['saturated_fraction']:>6.2f} {d['grad_norm']:>9.3g}  {d['verdict']}")
        return "\n".join(rows + [self.summary])

    def __str__(self):
        return self.summary


def _verdict(d):
    if not d["finite"] or d["saturated_fraction"] > SATURATED_FRACTION:
        return "exploded"
    if d["zero_fraction"] >= DEAD_FRACTION:
        return "collapsed"
    ratio = d["ratio"]
    if ratio < COLLAPSED_RATIO:
        return "collapsed"
    if ratio > EXPLODED_RATIO:
        return "exploded"
    return "healthy"


def _summary(layers):
    def names(verdict):
        return ", ".join(f"{d['index']} ({d['name']})" for d in layers if d["verdict"] == verdict)

    ratios = [d["ratio"] for d in layers if np.isfinite(d["ratio"])]
    grads = [d["grad_norm"] for d in layers if np.isfinite(d["grad_norm"])]
    detail = []
    if ratios:
        detail.append(f"std ratio {min(ratios):.2g}-{max(ratios):.2g}")
    if grads:
        detail.append(f"weight grad norm {min(grads):.2g}-{max(grads):.2g}")
    detail = f" ({'; '.join(detail)})" if detail else ""
    n_bad = sum(d["verdict"] != "healthy" for d in layers)
    if n_bad == 0:
        return f"healthy: all {len(layers)} layers{detail}"
    parts = [f"{len(layers) - n_bad}/{len(layers)} layers healthy"]
    for v in ("collapsed", "exploded"):
        if names(v):
            parts.append(f"{v}: {names(v)}")
    return "; ".join(parts) + detail


def health(model, X, y=None, loss="cross_entropy", training=False, bins=50):
    """Per-layer health verdicts and gradient norms after one backward pass.

    Parameters
    ----------
    model : fastnn.nn.Sequential (or a single layer)
    X : array_like, shape (N, in_features)
    y : array_like, optional
        Targets for ``loss``; the backward pass starts from that loss's
        gradient.  Without y it starts from a fixed random probe
        ``dy ~ N(0, 1) / N`` (seed 0), which measures how gradients propagate.
    loss : {"cross_entropy", "hinge", "mse", "mae", "binary_cross_entropy"}
    training : bool
        Training mode for the pass (default eval); the model is left
        exactly as it was, parameter gradients included.
    bins : int
        Histogram bins of the per-layer statistics.

    Returns
    -------
    Health
        ``.layers`` (per-layer dicts), ``.verdicts``, ``.healthy``,
        ``.summary`` (one line; also ``str(result)``), ``.table()``.

    Notes
    -----
    With ``ratio = std(layer output) / std(X)`` (std over all elements; 1
    when X is constant), a layer is

    - "exploded" if its output has NaN/inf, or more than 50% of a tanh /
      sigmoid output is saturated (|tanh| > 0.99, sigmoid outside
      [0.01, 0.99]), or ratio > 10;
    - "collapsed" if at least 99% of its outputs are exactly zero (dead
      ReLUs, zero init), or ratio < 0.1;
    - "healthy" otherwise.

    He-initialized ReLU networks on standardized data sit near ratio 0.6-1.5
    at every depth; N(0, 0.01) weights shrink the ratio by roughly
    0.01 * sqrt(fan_in / 2) per layer and N(0, 1) weights grow it by
    sqrt(fan_in / 2), so both cross a threshold within a few layers.
    """
    loss = check_choice(loss, "loss", tuple(LOSS_TABLE))
    bins = integer(bins, "bins", low=1)
    layers = _layers(model)
    X = _inputs(model, X)
    input_std = float(np.std(X, dtype=np.float64))
    if not np.isfinite(input_std) or input_std == 0:
        input_std = 1.0
    if y is not None:
        y = as_targets(model, X, y, loss)
    stats, grad_norms, input_grad_norms = [], [], []
    with model.preserved(training):
        x = X
        for i, layer in enumerate(layers):
            x = layer.forward(x)
            stats.append(_stats(layer, i, x, bins))
        if y is not None:
            _, dy = LOSS_TABLE[loss].with_grad(x, y)
        else:
            dy = np.random.default_rng(0).standard_normal(x.shape).astype(x.dtype) / x.shape[0]
        model.zero_grad()
        for layer in reversed(layers):
            dy = layer.backward(dy)
            input_grad_norms.append(float(np.linalg.norm(dy)))
            params = layer.parameters()
            grads = [p.grad for p in params if p.grad is not None]
            grad_norms.append(float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64))
                                                for g in grads))) if grads else float("nan"))
    grad_norms.reverse()
    input_grad_norms.reverse()
    for d, g, gi in zip(stats, grad_norms, input_grad_norms):
        d["ratio"] = d["std"] / input_std
        d["grad_norm"] = g
        d["input_grad_norm"] = gi
        d["verdict"] = _verdict(d)
    return Health(layers=stats, input_std=input_std, summary=_summary(stats))
