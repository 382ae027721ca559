"""``fastnn bench``: every kernel against plain numpy and torch, and the machine.

One run measures, side by side:

* the machine's limits: STREAM copy and triad (numba ``prange``, 128 MiB
  arrays) and SGEMM through numpy's BLAS; every DRAM-sized memory-bound
  case is also timed in rounds that alternate one kernel call with a STREAM
  copy and triad in the same process, and its "% of STREAM" is the median
  per-round ratio (the shared machine's bandwidth drifts during a run);
* every fastnn kernel at a tiny (call overhead), small (64 x 256), medium
  (4096 x 1024, fits in L3) and large (32768 x 1024, DRAM-sized) size, plus
  the shapes the performance targets name, against a plain-numpy
  implementation, torch (when installed) and scikit-learn (preprocessing).

Each competitor runs in its own worker process, interleaved case by case, so
thread pools (OpenBLAS, torch's OpenMP, numba's) never share a process.
Times are medians of repeated samples after warm-up.  Bandwidth uses the
byte models of ``fastnn.bench._cases.BYTE_MODEL`` (``fastnn bench --list``),
and the time of the call with a reused ``out=`` buffer where the kernel has
one; speed-ups against numpy and torch compare fresh outputs on both sides.

Use from the command line (``fastnn bench --help``) or from Python::

    from fastnn.bench import run
    result = run(kernel_patterns=["dropout"], sizes=["small"], quick=True)
"""
import argparse
import json
import sys

from ._cases import BYTE_MODEL, COMPETITORS, DEFAULT_SIZES, FLOP_MODEL, KERNELS, QUICK_SIZES
from ._runner import run

__all__ = ["run", "main", "build_parser", "save_json", "RESULTS_FOLDER", "KERNELS", "BYTE_MODEL",
           "FLOP_MODEL"]

_EPILOG = """\
method: every implementation group (fastnn, numpy, torch, scikit-learn, and
the STREAM / SGEMM probes) runs in its own worker process, interleaved case
by case, so OpenBLAS, torch's OpenMP pool and numba's pool never spin against
each other inside one process.  Times are medians of --repeat samples after
warm-up (the compiling first call is not counted); a sample repeats fast
calls until it lasts >= 2 ms.  GB/s uses the minimum-traffic byte model of
each kernel (--list); % peak compares with STREAM triad/copy or SGEMM
measured in the same run (for DRAM-sized memory-bound cases, alternated
call by call with the kernel in its own process).  The machine is likely shared: read
ratios, not absolute times.

fresh outputs vs out=: each kernel whose function accepts out= is timed
twice in the fastnn worker: "fastnn" returns fresh outputs (as numpy and
torch do) and "fastnn out=" writes into a buffer allocated once and reused.
GB/s and % of STREAM (and the CE G elements/s target) measure the kernel
with the reused output buffer; "x torch"/"x numpy" and the ratio targets
compare fresh outputs on both sides, each library allocating them as it does
for its users: fastnn's of 1 MiB or more come from the buffer cache of
fastnn.memory (this loop drops each result, so they cost no page faults),
numpy's and torch's from glibc malloc.

examples:
  fastnn bench                          # everything (several minutes)
  fastnn bench --check my_targets.toml  # ... and PASS/MISS/UNSTABLE per target of a file
  fastnn bench --check                  # ... of benchmarks/targets.toml (a fastnn checkout)
  fastnn bench --kernels dropout,batch_norm --sizes large
  fastnn bench --json new.json --compare old.json
  fastnn bench --json                   # ... saved in benchmarks/results/<machine>/ (a checkout)
  fastnn bench --load new.json --check  # re-report a saved run
  fastnn bench --quick                  # seconds: tiny sizes, small STREAM
"""


# --check without FILE: the project's targets file of this checkout.
_PROJECT_TARGETS = object()
# --json without FILE: a new file in the checkout's results folder.
RESULTS_FOLDER = object()


def save_json(result, where, kind, machine=None):
    """Write ``result`` to the file ``where``, or for ``--json`` alone to the results folder.

    Parameters
    ----------
    result : dict
        JSON-able, numpy scalars included.
    where : path-like or RESULTS_FOLDER
        A file name, or :data:`RESULTS_FOLDER` (the ``const`` of every
        ``--json`` option): a new file ``benchmarks/results/<machine>/<kind>-*.json``.
    kind : str
        What was measured (the file name's first word).
    machine : str, optional
        The machine class; :func:`fastnn.bench._results.machine_class` by default.

    Returns
    -------
    path-like
        The file written.
    """
    from ._results import results_path
    path = results_path(kind, machine) if where is RESULTS_FOLDER else where
    with open(path, "w") as f:
        # numpy scalars (np.bool_, np.float32) as the Python values they hold
        json.dump(result, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(f"\nsaved {path}")
    return path


def _load_targets(arg):
    """The Targets of --check, or an error message (checked before measuring)."""
    from . import _targets
    path = arg
    if arg is _PROJECT_TARGETS:
        path = _targets.default_path()
        if path is None:
            return None, ("--check without FILE reads benchmarks/targets.toml of a fastnn "
                          "checkout, and this installation has none: pass --check FILE")
    try:
        return _targets.load(path), None
    except (OSError, ValueError) as exc:
        return None, f"--check: {exc}"


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser(prog="fastnn bench"):
    p = argparse.ArgumentParser(
        prog=prog, description="Benchmark every fastnn kernel against numpy and torch, "
        "and measure the machine's bandwidth and BLAS speed in the same run.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", type=_csv, default=None, metavar="K1,K2",
                   help="only kernels whose name contains one of these (or matches a glob)")
    p.add_argument("--sizes", type=_csv, default=None, metavar="S1,S2",
                   help="size names (tiny, small, medium, large, extra) or NxD; default "
                   f"{','.join(DEFAULT_SIZES)} ({','.join(QUICK_SIZES)} with --quick)")
    p.add_argument("--dtypes", type=_csv, default=["float32"], metavar="T1,T2",
                   help="float32 and/or float64 (default float32)")
    p.add_argument("--against", type=_csv, default=list(COMPETITORS), metavar="C1,C2",
                   help=f"competitors (default {','.join(COMPETITORS)}); missing ones are skipped")
    p.add_argument("--repeat", type=int, default=None,
                   help="samples per measurement (default 7; 3 with --quick)")
    p.add_argument("--json", nargs="?", const=RESULTS_FOLDER, default=None, metavar="FILE",
                   help="save the results as JSON; without FILE into the checkout's results "
                   "folder, benchmarks/results/<machine>/ (fastnn.bench._results)")
    p.add_argument("--compare", metavar="OLD.json", help="compare with a saved run")
    p.add_argument("--load", metavar="FILE", help="report a saved run instead of running")
    p.add_argument("--check", nargs="?", const=_PROJECT_TARGETS, default=None, metavar="FILE",
                   help="judge the run against the performance targets of FILE (TOML; the "
                   "format is documented in fastnn.bench._targets): PASS/MISS per target, "
                   "UNSTABLE when its row's timings disagreed, SKIP when not measured.  "
                   "Without FILE: fastnn's own targets, benchmarks/targets.toml of the "
                   "checkout fastnn runs from (an installed wheel has none)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run (for tests): tiny/small sizes, 4 MiB STREAM, 256^3 SGEMM")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the import + first-call measurement (skipped with --quick)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--training", action="store_true",
                   help="instead of the kernels: whole training runs (ms per epoch, validation "
                   "score) of fastnn's compiled engine and layer path, torch and scikit-learn, "
                   "each run in a fresh process, --repeat interleaved rounds (default 3)")
    p.add_argument("--list", action="store_true",
                   help="print the kernels, byte models and sizes, then exit")
    return p


def main(argv=None):
    """Entry point of ``fastnn bench``; returns the exit status."""
    from . import _report
    args = build_parser().parse_args(argv)
    if args.training:
        from . import _training
        return _training.main(args)
    if args.list:
        print(_report.byte_model_table())
        return 0
    targets = None
    if args.check is not None:
        targets, error = _load_targets(args.check)
        if error:
            print(f"fastnn bench: {error}", file=sys.stderr)
            return 2
    if args.load:
        with open(args.load) as f:
            result = json.load(f)
    else:
        if args.repeat is not None and args.repeat < 1:
            print("fastnn bench: --repeat must be >= 1", file=sys.stderr)
            return 2
        for dt in args.dtypes:
            if dt not in ("float32", "float64"):
                print(f"fastnn bench: unsupported dtype {dt!r} (float32, float64)", file=sys.stderr)
                return 2
        try:
            result = run(kernel_patterns=args.kernels,
                         sizes=args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES),
                         dtypes=args.dtypes, against=args.against,
                         repeat=args.repeat or (3 if args.quick else 7), quick=args.quick,
                         startup=False if args.no_startup else None,
                         progress=not args.no_progress,
                         confirm=args.check is not None and not args.quick)
        except ValueError as exc:
            print(f"fastnn bench: {exc}", file=sys.stderr)
            return 2
    print(_report.table(result))
    if args.json:
        save_json(result, args.json, "kernels")
    if args.compare:
        with open(args.compare) as f:
            old = json.load(f)
        print()
        print(_report.compare(old, result))
    if targets is not None:
        from ._targets import check
        print()
        print(f"targets file: {targets.path}")
        print(check(result, targets)[0])
    return 0
