"""Performance targets as data: read a targets file, judge a run against it.

``fastnn bench --check FILE`` prints one PASS / MISS / SKIP / UNSTABLE line
per target of FILE.  The library holds only this evaluator; which numbers a
project wants to reach is the project's data (fastnn's own are in
``benchmarks/targets.toml`` of a checkout, which ``--check`` alone reads).

A targets file is TOML: an optional ``title`` (the first line of the report)
and ``targets``, a list of tables, each with a ``kind``, a ``text`` (what the
line says before the criterion, which is written from the threshold) and the
fields of its kind.  Kernel kinds take ``kernel`` (a name of ``fastnn bench
--list``), ``shape`` ([n, d]) and optionally ``dtype`` (default float32):

========================  =======================================  ==================
kind                      value judged                             fields
========================  =======================================  ==================
``ratio``                 competitor time / fastnn time (fresh)    competitor, min
``pct``                   % of the machine's peak (out= time)      min
``rate_per_core``         G elements/s per numba thread (out=)     min
``ratio_sum``             sum of competitor times / sum of fastnn  kernels, competitor,
                          times over several kernels (fresh)       min
``time_ratio``            fastnn time / competitor time (fresh)    competitor, max,
                                                                   [competitor_text]
``overhead``              fastnn time of one call, in seconds      max
``startup``               import + first calls, second process, s  max
``signature``             no parameter of ``fastnn.functional.``   function, excludes
                          *function* contains *excludes*
========================  =======================================  ==================

``min`` targets pass when the value is >= min, ``max`` targets when it is
<= max.  A target whose row was not measured is SKIP; one whose row's
timings stayed noisy (``_stability``) is UNSTABLE, neither a pass nor a miss.
"""
import math
from dataclasses import dataclass
from pathlib import Path

from . import _cases
from ._report import fmt_time, median, rate_impl

_KERNEL = {"kernel", "shape"}
# kind -> (required fields besides kind and text, optional fields)
KINDS = {
    "ratio": (_KERNEL | {"competitor", "min"}, {"dtype"}),
    "pct": (_KERNEL | {"min"}, {"dtype"}),
    "rate_per_core": (_KERNEL | {"min"}, {"dtype"}),
    "ratio_sum": ({"kernels", "shape", "competitor", "min"}, {"dtype"}),
    "time_ratio": (_KERNEL | {"competitor", "max"}, {"dtype", "competitor_text"}),
    "overhead": (_KERNEL | {"max"}, {"dtype"}),
    "startup": ({"max"}, set()),
    "signature": ({"function", "excludes"}, set()),
}
STATUSES = ("PASS", "MISS", "UNSTABLE", "SKIP")


@dataclass(frozen=True)
class Targets:
    """A validated targets file: its title, its targets (dicts) and where it came from."""

    title: str
    items: tuple
    path: str


class Unstable(str):
    """Why a target was not judged: its row's timings stayed noisy (see ``_stability``)."""


# ------------------------------------------------------------------ reading
def default_path():
    """The project's own targets file next to this checkout, or None.

    Returns
    -------
    pathlib.Path or None
        ``benchmarks/targets.toml`` beside the ``fastnn`` package directory
        when fastnn runs from a checkout (or an editable install); None for
        an installed wheel, which ships no project targets.

    Examples
    --------
    >>> p = default_path()
    >>> p is None or p.name == "targets.toml"
    True
    """
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "targets.toml"
    return path if path.is_file() else None


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ValueError("reading a TOML targets file on Python 3.10 needs the tomli "
                             "package (pip install tomli)") from None
    return tomllib


def load(path):
    """Read a targets file and check every target before anything is measured.

    Parameters
    ----------
    path : str or os.PathLike
        A TOML file in the format of this module's docstring.

    Returns
    -------
    Targets
        Its ``title``, ``items`` (one dict per target) and ``path``.

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        If it is not TOML, has no targets, or a target has an unknown kind,
        a missing or unknown field, a kernel or competitor that ``fastnn
        bench`` does not measure, or a threshold that is not a positive
        number; the message names the file, the target and the value.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "t.toml")
    ...     with open(path, "w") as f:
    ...         _ = f.write('targets = [{kind = "startup", text = "cold start", max = 1.5}]')
    ...     describe(load(path).items[0])
    'cold start: <= 1.5 s'
    """
    with open(path, "rb") as f:
        try:
            data = _toml().load(f)
        except ValueError as exc:  # tomllib.TOMLDecodeError
            raise ValueError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = set(data) - {"title", "targets"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)} (title, targets)")
    items = data.get("targets")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: needs a non-empty list 'targets', got {items!r}")
    title = data.get("title", "targets")
    if not isinstance(title, str):
        raise ValueError(f"{path}: title must be a string, got {title!r}")
    for i, target in enumerate(items, 1):
        _validate(target, f"{path}: target {i}")
    return Targets(title=title, items=tuple(items), path=str(path))


def _validate(target, where):
    if not isinstance(target, dict):
        raise ValueError(f"{where}: expected a table, got {target!r}")
    kind = target.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    where = f"{where} ({target.get('text', kind)!r})"
    required, optional = KINDS[kind]
    required = required | {"kind", "text"}
    missing, unknown = required - set(target), set(target) - required - optional
    if missing or unknown:
        raise ValueError(f"{where}: kind {kind!r} needs {sorted(required)} (optional "
                         f"{sorted(optional)}); missing {sorted(missing)}, "
                         f"unknown {sorted(unknown)}")
    for name, value in target.items():
        if name != "kind" and not _FIELD_OK[name](value):
            raise ValueError(f"{where}: bad {name} {value!r}: {_FIELD_WANT[name]}")
    kernels = target.get("kernels") or [target.get("kernel")]
    for k in kernels if "competitor" in target else ():
        if target["competitor"] not in _competitors(k):
            raise ValueError(f"{where}: kernel {k!r} is not measured against "
                             f"{target['competitor']!r} (only {', '.join(_competitors(k))})")


def _competitors(kernel):
    return [c for c in _cases.KERNELS_BY_NAME[kernel].builders if c not in ("fastnn", "fastnn_out")]


def _word(v):
    return isinstance(v, str) and bool(v.strip())


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf


_FIELD_OK = {
    "text": _word, "competitor": _word, "competitor_text": _word, "function": _word,
    "excludes": _word,
    "kernel": lambda v: isinstance(v, str) and v in _cases.KERNELS_BY_NAME,
    "kernels": lambda v: isinstance(v, list) and bool(v)
    and all(isinstance(k, str) and k in _cases.KERNELS_BY_NAME for k in v),
    "shape": lambda v: isinstance(v, list) and len(v) == 2
    and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v),
    "dtype": lambda v: v in ("float32", "float64"),
    "min": _positive, "max": _positive,
}
_FIELD_WANT = {
    "text": "a non-empty string", "competitor": "a non-empty string",
    "competitor_text": "a non-empty string", "function": "a non-empty string",
    "excludes": "a non-empty string",
    "kernel": "a kernel of fastnn bench --list", "kernels": "a list of kernels of --list",
    "shape": "[n, d], two positive integers", "dtype": "float32 or float64",
    "min": "a positive number", "max": "a positive number",
}


# ------------------------------------------------------------------ judging
def _has_out(kernel):
    return "fastnn_out" in _cases.KERNELS_BY_NAME[kernel].builders


def _find(run, kernel, shape, dtype="float32"):
    for r in run["results"]:
        if r["kernel"] == kernel and (r["n"], r["d"]) == tuple(shape) and r["dtype"] == dtype:
            return r
    return None


def _metric(run, kernel, shape, what, dtype="float32"):
    """(value, None) or (None, why-not-measured)."""
    r = _find(run, kernel, shape, dtype)
    if r is None:
        return None, "not measured in this run"
    if r.get("skipped"):
        return None, r["skipped"]
    if median(r, "fastnn") is None:
        return None, "fastnn timing failed"
    stability = r.get("stability") or {}
    if stability.get("unstable"):
        return None, Unstable(f"samples disagree: max/min {stability['spread']:.2f} > "
                              f"{stability['bound']:g} in each of {stability['rounds']} round(s)")
    if what == "pct":
        v = r.get("pct_peak")
        return (v, None) if v is not None else (None, "no machine peak measured")
    if what == "time":
        return median(r, "fastnn"), None
    if what == "rate_time":  # the time rates use: out= when measured
        return median(r, r.get("rate_impl") or rate_impl(r)), None
    v = (r.get("speedup") or {}).get(what)
    return (v, None) if v is not None else (None, f"{what} not measured")


def _row(t, run, what):
    return _metric(run, t["kernel"], t["shape"], what, t.get("dtype", "float32"))


def _ratio(t, run):
    v, why = _row(t, run, t["competitor"])
    return v, why, (v is not None and v >= t["min"]), None if v is None else f"{v:.2f}x"


def _pct(t, run):
    v, why = _row(t, run, "pct")
    if v is None:
        return v, why, False, None
    r = _find(run, t["kernel"], t["shape"], t.get("dtype", "float32"))
    shown = f"{v:.0f}% of {r['peak']}"
    if _has_out(t["kernel"]) and r.get("rate_impl") != "fastnn_out":
        shown += " (fresh output: no out= time)"
    return v, why, v >= t["min"], shown


def _rate_per_core(t, run):
    v, why = _row(t, run, "rate_time")
    if v is None:
        return None, why, False, None
    machine = run.get("machine") or {}
    fw = (machine.get("workers") or {}).get("fastnn") or {}
    cores = fw.get("numba_threads") or machine.get("cpu_count") or 1
    g = t["shape"][0] * t["shape"][1] / v / 1e9 / cores
    r = _find(run, t["kernel"], t["shape"], t.get("dtype", "float32"))
    via = "out=" if rate_impl(r) == "fastnn_out" else "fresh output"
    return g, None, g >= t["min"], f"{g:.2f} G elements/s per core ({cores} threads, {via})"


def _ratio_sum(t, run):
    dtype = t.get("dtype", "float32")
    mine = [_metric(run, k, t["shape"], "time", dtype) for k in t["kernels"]]
    if any(v is None for v, _ in mine):
        return None, next(why for v, why in mine if v is None), False, None
    theirs = [median(_find(run, k, t["shape"], dtype), t["competitor"]) for k in t["kernels"]]
    if any(v is None for v in theirs):
        return None, f"{t['competitor']} not measured", False, None
    v = sum(theirs) / sum(v for v, _ in mine)
    return v, None, v >= t["min"], f"{v:.2f}x"


def _time_ratio(t, run):
    v, why = _row(t, run, t["competitor"])
    if v is None:
        return None, why, False, None
    over = math.inf if v == 0 else 1.0 / v  # fastnn time / competitor time
    label = t.get("competitor_text", t["competitor"])
    return over, None, over <= t["max"], f"{over:.2f}x {label}"


def _overhead(t, run):
    v, why = _row(t, run, "time")
    if v is None:
        return None, why, False, None
    return v, None, v <= t["max"], fmt_time(v)


def _startup(t, run):
    s = run.get("startup")
    if not s or "total_s" not in s:
        return None, (s or {}).get("error", "not measured (--quick or --no-startup)"), False, None
    return s["total_s"], None, s["total_s"] <= t["max"], f"{s['total_s']:.2f} s"


def _signature(t, run):
    # fastnn bench records the parameter names of the function (run["facts"]).
    params = (run.get("facts") or {}).get(f"{t['function']}_params")
    if params is None:
        return None, f"fastnn.functional.{t['function']} not present", False, None
    ok = not any(t["excludes"] in p for p in params)
    return 1.0, None, ok, f"{t['function']}({', '.join(params)})"


_EVALUATE = {"ratio": _ratio, "pct": _pct, "rate_per_core": _rate_per_core,
             "ratio_sum": _ratio_sum, "time_ratio": _time_ratio, "overhead": _overhead,
             "startup": _startup, "signature": _signature}


def describe(target):
    """The line's text: the target's ``text`` and its criterion.

    Parameters
    ----------
    target : dict
        One validated target (an item of :func:`load`'s result).

    Returns
    -------
    str
        For example ``"dropout_fwd 32768x1024: >= 20x torch (fresh outputs)"``.

    Examples
    --------
    >>> describe({"kind": "ratio", "text": "softmax 64x256", "kernel": "softmax",
    ...           "shape": [64, 256], "competitor": "torch", "min": 3})
    'softmax 64x256: >= 3x torch'
    """
    kind, text = target["kind"], target["text"]
    out = "kernel" in target and _has_out(target["kernel"])
    if kind == "ratio":
        return f"{text}: >= {target['min']:g}x {target['competitor']}" + (
            " (fresh outputs)" if out else "")
    if kind in ("pct", "rate_per_core"):
        what = "% of peak" if kind == "pct" else " G elements/s per core"
        return f"{text}: >= {target['min']:g}{what}" + (" (out= time)" if out else "")
    if kind == "ratio_sum":
        return f"{text}: >= {target['min']:g}x {target['competitor']}"
    if kind == "time_ratio":
        return f"{text}: <= {target['max']:g}x " + target.get("competitor_text",
                                                              target["competitor"])
    if kind == "overhead":
        return f"{text}: call overhead <= {fmt_time(target['max'])}"
    if kind == "startup":
        return f"{text}: <= {target['max']:g} s"
    return text


def evaluate(target, run):
    """Judge one target against a run.

    Parameters
    ----------
    target : dict
        One validated target (an item of :func:`load`'s result).
    run : dict
        A run of ``fastnn.bench.run`` (or its saved JSON), rows derived.

    Returns
    -------
    status : str
        PASS, MISS, UNSTABLE (the row's timings disagreed) or SKIP (not
        measured in this run, or the function is not present).
    detail : str
        The measured value as shown (PASS/MISS), else why it was not judged.

    Examples
    --------
    >>> evaluate({"kind": "startup", "text": "start", "max": 1.0},
    ...          {"startup": {"total_s": 0.4}, "results": []})
    ('PASS', '0.40 s')
    """
    v, why, ok, shown = _EVALUATE[target["kind"]](target, run)
    if isinstance(why, Unstable):
        return "UNSTABLE", f"({why})"
    if v is None:
        return "SKIP", f"({why})"
    return ("PASS" if ok else "MISS"), shown


def check(run, targets):
    """One PASS/MISS/UNSTABLE/SKIP line per target, and the counts.

    Parameters
    ----------
    run : dict
        A run of ``fastnn.bench.run`` (or its saved JSON), rows derived.
    targets : Targets
        What :func:`load` returned.

    Returns
    -------
    text : str
        The title, one line per target, and a summary line.
    counts : dict
        How many targets got each status (keys PASS, MISS, UNSTABLE, SKIP).

    Examples
    --------
    >>> t = Targets("demo", ({"kind": "startup", "text": "start", "max": 1.0},), "-")
    >>> text, counts = check({"startup": None, "results": []}, t)
    >>> counts["SKIP"], text.splitlines()[1]
    (1, '  SKIP  start: <= 1 s (not measured (--quick or --no-startup))')
    """
    lines = [f"{targets.title}:"]
    counts = dict.fromkeys(STATUSES, 0)
    texts = [describe(t) for t in targets.items]
    width = max(len(text) for text in texts)
    for text, target in zip(texts, targets.items):
        status, detail = evaluate(target, run)
        counts[status] += 1
        lines.append(f"  {status}  {text:<{width}} {detail}")
    lines.append(f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['UNSTABLE']} UNSTABLE, "
                 f"{counts['SKIP']} SKIP (SKIP: not measured in this run or kernel not present; "
                 "UNSTABLE: the timings disagreed, rerun on a quieter machine)")
    return "\n".join(lines), counts
