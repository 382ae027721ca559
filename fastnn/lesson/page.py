"""The lesson as one interactive, self-contained web page.

``fastnn lesson --html DIR`` runs every experiment (as the text/PNG mode
does), adds what the interactions need, and writes ``DIR/index.html``: Bokeh
figures with their JavaScript inlined, the data inlined as JSON, the lesson's
controls as plain HTML, so the page opens from the file system with no
network.  What the page computes and what fastnn precomputed:

- Initialization: :data:`exp3_init.N_PASSES` forward passes per init are
  precomputed by fastnn (fresh weights and a fresh batch of digits per pass,
  verdicts from ``fastnn.diagnostics.health``); "Forward Pass" steps to the
  next one.
- Dropout: the page computes each mask itself with a JavaScript port of
  fastnn's counter-based generator, so the mask shown for seed s is
  ``fastnn.functional.dropout_mask((2, width), p, s)``.
- Everything else (batch-norm drift, the L2 and learning-rate sweeps, the
  loss shapes, the contours) is precomputed by fastnn on real data; sliders
  choose among the results.
"""
import contextlib
import html
import io
import json
import os
import tempfile
import time
from importlib import resources

import numpy as np

from . import _page_figures as PF
from . import exp3_init, exp8_lr

__all__ = ["build", "collect"]

#: Hidden layers and units of the dropout drawing (a 3-layer network).
DROPOUT_NET = (4, 6, 6, 3)

SECTIONS = (  # (experiment number, anchor, heading, the lesson's sentence)
    (1, "setup", "1. Poor setup vs good setup",
     ("Both networks have the same architecture (2 hidden layers, 16 neurons each). Left: poor "
     "setup (no preprocessing, zero init). Right: good setup (normalized data, He init). "
     "Watch the loss curves diverge.")),
    (2, "normalization", "2. Raw vs normalized data",
     ("Left: raw data creates an elongated loss contour. Right: normalized data creates "
     "circular contours. The gradient points directly toward the minimum.")),
    (3, "init", "3. Weight initialization",
     ("Click an init method, then \"Forward Pass\" to push random data through the network. "
     "Green = healthy, red = collapsed/exploded. Each press draws fresh weights and a fresh "
     "batch of digits.")),
    (4, "batchnorm", "4. Batch normalization",
     ("Without batch norm, activations drift as training progresses (left). With batch norm, "
     "they stay centered and stable (right). Drag the epoch slider to see how distributions "
     "evolve.")),
    (5, "l2", "5. L2 regularization",
     ("A network fits noisy data. Increase lambda to see L2 regularization smoothing the fit. "
     "Too little: overfitting. Too much: underfitting.")),
    (6, "dropout", "6. Dropout",
     ("A 3-layer network with dropout. Click \"Drop\" to randomly zero out neurons (gray). "
     "Each forward pass uses a different random subset of the network.")),
    (7, "losses", "7. Loss functions",
     ("Predicted score for the correct class on the x-axis, loss on the y-axis. Cross-entropy "
     "grows sharply as confidence in the wrong answer increases. Hinge loss is piecewise "
     "linear.")),
    (8, "lr", "8. Learning rate",
     ("Too high and the loss oscillates or diverges. Too low and training takes forever. A "
     "common technique: warmup (start low, increase linearly) followed by cosine decay.")),
)


def _run_experiments(quick):
    """Every experiment's numbers and the text it prints, its PNGs thrown away."""
    from . import EXPERIMENTS
    results, texts = {}, {}
    with tempfile.TemporaryDirectory(prefix="fastnn-lesson-") as tmp:
        for n, module in EXPERIMENTS.items():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                results[n] = module.run(tmp, quick=quick)
            lines = [ln for ln in buf.getvalue().splitlines() if "figure: " not in ln]
            texts[n] = "\n".join(ln.removeprefix("  ") for ln in lines).strip()
    return results, texts


def collect(quick=False, n_passes=exp3_init.N_PASSES):
    """Run the experiments and the page's extra sweeps.

    Parameters
    ----------
    quick : bool
        The experiments' quick mode (fewer epochs and samples).
    n_passes : int >= 1
        Forward passes precomputed per init.

    Returns
    -------
    dict
        "results" and "texts" ({experiment number: its numbers / its printed
        report}), "passes" (:func:`exp3_init.random_passes`) and "lr_sweep"
        (:func:`exp8_lr.sweep`).
    """
    results, texts = _run_experiments(quick)
    return {"results": results, "texts": texts,
            "passes": exp3_init.random_passes(n_passes),
            "lr_sweep": exp8_lr.sweep(quick)}


def _section(anchor, heading, sentence, controls, figure_divs, side_divs, text):
    """One section: heading, the lesson's sentence, controls, figures, and beside
    them (or below, on a narrow window) the side figures and the printed numbers."""
    figures, side = "\n".join(figure_divs), "\n".join(side_divs)
    return (f'<section id="{anchor}">\n<h2>{html.escape(heading)}</h2>\n'
            f'<p class="lesson">{html.escape(sentence)}</p>\n'
            f'<div class="controls">{controls}</div>\n'
            f'<div class="body"><div class="figures">{figures}</div>\n'
            f'<div class="side">{side}\n'
            f'<pre class="numbers" id="numbers-{anchor}">{html.escape(text)}</pre></div></div>\n'
            f'</section>')


def _jsonable(x):
    """numpy -> JSON: 4 significant digits (the page's resolution), NaN/inf -> null."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return float(f"{x:.4g}") if np.isfinite(x) else None
    return x


def _asset(name):
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _assemble(data):
    """The page's HTML: Bokeh's inline JavaScript, the figures, the data, the controls."""
    from bokeh.embed import components
    from bokeh.resources import Resources
    parts = PF.build_all(data, DROPOUT_NET)
    script, divs = components({name: model for name, model in parts["models"].items()})
    sections = []
    for n, anchor, heading, sentence in SECTIONS:
        sec = parts["sections"][anchor]
        sections.append(_section(anchor, heading, sentence, sec["controls"],
                                 [divs[name] for name in sec["figures"]],
                                 [divs[name] for name in sec.get("side", ())],
                                 data["texts"][n]))
    bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js()
    nav = " · ".join(f'<a href="#{a}">{html.escape(h.split(". ", 1)[1])}</a>'
                     for _, a, h, _ in SECTIONS)
    page_data = json.dumps(_jsonable(parts["js_data"]), separators=(",", ":"), allow_nan=False)
    return (_asset("page.html")
            .replace("{{STYLE}}", _asset("page.css"))
            .replace("{{BOKEH_JS}}", bokeh_js)
            .replace("{{NAV}}", nav)
            .replace("{{SECTIONS}}", "\n".join(sections))
            .replace("{{BOKEH_SCRIPT}}", script)
            .replace("{{DATA}}", page_data.replace("</", "<\\/"))
            .replace("{{PAGE_JS}}", _asset("page.js")))


def build(out_dir, quick=False, n_passes=exp3_init.N_PASSES):
    """Write the interactive lesson to ``out_dir/index.html``.

    Parameters
    ----------
    out_dir : str or path
        Folder for the page (created if missing).
    quick : bool
        The experiments' quick mode: the page in well under a minute.
    n_passes : int >= 1
        Forward passes precomputed per init (the "Forward Pass" button cycles
        through them).

    Returns
    -------
    dict
        "path" (the page), "bytes" (its size), "seconds" (generation time).

    Raises
    ------
    ImportError
        Bokeh, scikit-learn or matplotlib is missing.
    ValueError
        ``n_passes`` not an integer >= 1; ``out_dir`` an existing file.

    Examples
    --------
    >>> from fastnn.lesson import page
    >>> page.build("/tmp/lesson_page", quick=True)["path"]  # doctest: +SKIP
    '/tmp/lesson_page/index.html'
    """
    if isinstance(n_passes, bool) or not isinstance(n_passes, (int, np.integer)) \
            or n_passes < 1:
        raise ValueError(f"n_passes must be an integer >= 1, got {n_passes!r}")
    out_dir = os.fspath(out_dir)
    # Refuse a file in the way now, not after a minute of training.
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir {out_dir!r} exists and is not a directory")
    try:
        import bokeh  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the lesson page needs Bokeh: pip install 'fastnn[lesson]'") from exc
    t0 = time.perf_counter()
    text = _assemble(collect(quick, int(n_passes)))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return {"path": path, "bytes": os.path.getsize(path),
            "seconds": time.perf_counter() - t0}
