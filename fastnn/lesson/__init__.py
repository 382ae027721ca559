"""The lesson's experiments, reproduced on real data.

Each experiment trains or probes small networks with fastnn, prints the
numbers behind its claim and writes a PNG figure (matplotlib, Agg backend):

1. poor setup (raw data, zero init) vs good setup (standardized, He init)
2. raw vs normalized data: loss contours and gradient-descent paths
3. initialization: activation variance and histograms per layer, health
   verdicts, and the symmetry of zero init
4. batch norm: activation drift over epochs with and without it
5. L2 regularization: from overfitting to underfitting
6. dropout: the train/validation gap on a small training set
7. losses: cross-entropy vs hinge; MSE vs MAE with outliers
8. learning rate: warmup + cosine, too high / too low / good

Run from the command line::

    fastnn lesson --out lesson_out            # all eight, a few minutes on 2 cores
    fastnn lesson --out /tmp/l --quick --only 1,3
    fastnn lesson --html lesson_page          # one interactive page: lesson_page/index.html

or from Python: ``fastnn.lesson.run("lesson_out", quick=True)`` returns a
dict {experiment number: dict of its numbers, with "figures" the PNG paths}.
"""
import argparse
import time

from . import (exp1_setup, exp2_normalization, exp3_init, exp4_batchnorm, exp5_l2,
               exp6_dropout, exp7_losses, exp8_lr)

__all__ = ["EXPERIMENTS", "run", "main"]

EXPERIMENTS = {
    1: exp1_setup, 2: exp2_normalization, 3: exp3_init, 4: exp4_batchnorm,
    5: exp5_l2, 6: exp6_dropout, 7: exp7_losses, 8: exp8_lr,
}


#: Short names accepted by --only besides the numbers.
NAMES = {"setup": 1, "normalization": 2, "init": 3, "batchnorm": 4, "l2": 5,
         "dropout": 6, "losses": 7, "lr": 8}


def _parse_only(only):
    if only is None:
        return sorted(EXPERIMENTS)
    if isinstance(only, (str, int)):
        only = [x for x in str(only).replace(" ", "").split(",") if x]
    numbers = []
    for x in only:
        x = NAMES.get(x, x) if isinstance(x, str) else x
        try:
            numbers.append(int(x))
        except (TypeError, ValueError):
            raise ValueError(f"unknown experiment {x!r}: use numbers 1-8 or names "
                             f"{', '.join(NAMES)}") from None
    only = numbers
    if not only:
        raise ValueError("no experiment selected: give numbers 1-8 or names")
    bad = [x for x in only if x not in EXPERIMENTS]
    if bad:
        raise ValueError(f"unknown experiment number(s) {bad}; choose from {sorted(EXPERIMENTS)}")
    return sorted(set(only))


def run(out_dir="lesson_out", quick=False, only=None):
    """Run the lesson's experiments, print their numbers, write their figures.

    Parameters
    ----------
    out_dir : str or path
        Folder for the PNG figures (created if missing).
    quick : bool
        Fewer epochs and samples: all eight in well under a minute (for tests).
    only : iterable of int/str, or str like "1,3" or "init,lr", optional
        The experiments to run, by number or name (:data:`NAMES`; default: all).

    Returns
    -------
    dict
        {experiment number: dict of the numbers behind its figure}; each has
        "figures", the list of PNG files written.

    Raises
    ------
    ValueError
        An unknown experiment number.
    ImportError
        scikit-learn (the data) or matplotlib (the figures) is missing.

    Examples
    --------
    >>> from fastnn import lesson
    >>> results = lesson.run("/tmp/lesson", quick=True, only=[7])  # doctest: +SKIP
    >>> results[7]["figures"]  # doctest: +SKIP
    ['/tmp/lesson/exp7_losses.png']
    """
    import os
    numbers = _parse_only(only)
    out_dir = os.fspath(out_dir)
    results = {}
    for n in numbers:
        t0, c0 = time.perf_counter(), time.process_time()
        results[n] = EXPERIMENTS[n].run(out_dir, quick=quick)
        results[n]["seconds"] = time.perf_counter() - t0
        print(f"  ({results[n]['seconds']:.1f} s wall, {time.process_time() - c0:.1f} s CPU)",
              flush=True)
    return results


def _html_main(out_dir, quick):
    from . import page
    r = page.build(out_dir, quick=quick)
    print(f"wrote {r['path']} ({r['bytes'] / 2 ** 20:.2f} MiB) in {r['seconds']:.1f} s; "
          "open it in a browser (no network needed)")
    return 0


def main(argv=None):
    """``fastnn lesson [--out DIR | --html DIR] [--quick] [--only N,...]``; returns an exit code."""
    parser = argparse.ArgumentParser(
        prog="fastnn lesson",
        description="Reproduce the lesson's experiments on real data: print the numbers "
                    "and write one PNG figure per experiment, or (--html) one interactive, "
                    "self-contained web page with all of them.")
    parser.add_argument("--out", default="lesson_out",
                        help="folder for the figures (default: ./lesson_out)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs and samples (under a minute in all)")
    parser.add_argument("--only", default=None, metavar="N,...",
                        help="comma-separated experiment numbers 1-8 or names ("
                             + ", ".join(f"{v}={k}" for k, v in NAMES.items()) + "; default: all)")
    parser.add_argument("--html", default=None, metavar="DIR",
                        help="write the lesson as one interactive page, DIR/index.html "
                             "(every experiment; needs Bokeh), instead of the PNGs")
    args = parser.parse_args(argv)
    if args.html is not None:
        if args.only is not None:
            parser.error("--html writes every experiment: it cannot be combined with --only")
        return _html_main(args.html, args.quick)
    try:
        numbers = _parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    results = run(args.out, quick=args.quick, only=numbers)
    files = [f for r in results.values() for f in r["figures"]]
    print(f"\n{len(results)} experiment(s) in {time.perf_counter() - t0:.1f} s; "
          f"figures: {', '.join(files)}")
    return 0
