"""Tables, comparisons between runs, and the performance targets (--check).

Two fastnn times per kernel: ``fastnn`` returns fresh outputs, as every
competitor does, and ``fastnn_out`` (kernels with an ``out=`` parameter)
writes into a buffer reused across calls.  Speed-ups ("x torch", "x numpy")
and the ratio targets use the fresh time: every library allocates its
outputs as it does for its users (fastnn's of 1 MiB or more come from the
buffer cache of fastnn.memory, torch's and numpy's from their allocators).
GB/s, "% of peak" and the rate targets use the out= time when there is one,
so they measure the kernel alone.  Runs saved before ``fastnn_out`` existed
load unchanged: their rate comes from the fresh time, as it did then.
"""
import statistics

from . import _cases

SHOWN = ("numpy", "torch", "sklearn")
FASTNN = ("fastnn", "fastnn_out")
RATE_NOTE = ("GB/s and % of STREAM measure the kernel with a reused output buffer (the "
             "\"fastnn out=\" time) where the kernel accepts out=; \"x torch\"/\"x numpy\" "
             "compare fresh outputs on both sides.")


def _median(row, impl):
    t = row["times"].get(impl)
    return t.get("median") if isinstance(t, dict) else None


def _rate_impl(row):
    """The fastnn time that rates measure: out= when timed, else fresh."""
    return "fastnn_out" if _median(row, "fastnn_out") is not None else "fastnn"


def derive(row, run):
    """Add rate, % of peak and speed-ups to a result row (in place).

    Speed-ups divide by the fresh-output time; the rate (and % of peak)
    uses the out= time when there is one (``row["rate_impl"]`` says which).
    """
    row["speedup"], row["rate"], row["pct_peak"] = {}, None, None
    row["rate_impl"] = None
    t = _median(row, "fastnn")
    if t is not None:
        for impl in row["times"]:
            other = _median(row, impl)
            if impl not in FASTNN and other is not None:
                row["speedup"][impl] = other / t
    impl = _rate_impl(row)
    t = _median(row, impl)
    if t is None:
        return row
    row["rate_impl"] = impl
    machine = run.get("machine", {})
    if row["unit"] == "B":
        row["rate"] = row["work"] / t / 1e9  # GB/s
        paired = row.get("paired_stream") or {}
        if paired.get("kernel"):
            # DRAM-sized: the median over rounds of (kernel GB/s) / (STREAM GB/s
            # measured right after it), robust to the machine's drift.
            probe, nbytes = paired[row["peak"]], paired[row["peak"] + "_bytes"]
            row["pct_peak"] = 100.0 * statistics.median(
                (row["work"] / tk) / (nbytes / tp) for tk, tp in zip(paired["kernel"], probe))
            return row
        key = {"triad": "triad_gbs", "copy": "copy_gbs"}[row["peak"]]
        peak = (machine.get("stream") or {}).get(key)
    else:
        row["rate"] = row["work"] / t / 1e9  # GFLOP/s
        peak = (machine.get("sgemm") or {}).get("gflops")
    if peak:
        row["pct_peak"] = 100.0 * row["rate"] / peak
    return row


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.3g} us"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _cell_time(row, impl):
    t = row["times"].get(impl)
    if t is None:
        return "-"
    if "error" in t:
        return "error"
    return fmt_time(t["median"])


def _fmt_x(v):
    return "-" if v is None else (f"{v:.3g}x" if v < 100 else f"{v:.0f}x")


def table(run):
    """The result table as a string (one line per kernel/size/dtype)."""
    rows = run["results"]
    shown = [c for c in SHOWN if any(c in r["times"] for r in rows)]
    with_out = any("fastnn_out" in r["times"] for r in rows)
    head = (["kernel", "size", "dtype", "fastnn"] + (["fastnn out="] if with_out else [])
            + shown + [f"x {c}" for c in shown] + ["rate", "% peak"])
    body, notes = [], []
    for r in rows:
        if r.get("skipped"):
            body.append([r["kernel"], r["size"], r["dtype"], "skipped: " + r["skipped"]])
            continue
        unstable = (r.get("stability") or {}).get("unstable")
        cells = [r["kernel"] + (" UNSTABLE" if unstable else ""), r["size"], r["dtype"],
                 _cell_time(r, "fastnn")]
        if with_out:
            cells.append(_cell_time(r, "fastnn_out"))
        cells += [_cell_time(r, c) for c in shown]
        cells += [_fmt_x(r.get("speedup", {}).get(c)) for c in shown]
        if r.get("rate") is None:
            cells += ["-", "-"]
        else:
            unit = "GB/s" if r["unit"] == "B" else "GF/s"
            cells.append(f"{r['rate']:.3g} {unit}")
            cells.append("-" if r.get("pct_peak") is None
                         else f"{r['pct_peak']:.0f}% {r['peak']}")
        body.append(cells)
        for impl, t in r["times"].items():
            if "error" in t:
                notes.append(f"{r['kernel']} {r['size']} {r['dtype']} [{impl}]: {t['error']}")
    widths = [max(len(h), *(len(b[i]) for b in body if len(b) == len(head) and i < len(b)))
              if body else len(h) for i, h in enumerate(head)]
    lines = [header(run), "",
             "  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    for b in body:
        if len(b) != len(head):
            lines.append("  ".join(c.ljust(w) for c, w in zip(b[:3], widths[:3])) + "  " + b[3])
        else:
            lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(b, widths))))
    lines.append("")
    lines.append("times: median per call; fastnn returns fresh outputs like every competitor"
                 + ("; fastnn out= writes into a buffer reused across calls." if with_out
                    else "."))
    lines.append("x <competitor>: competitor time / fastnn time, fresh outputs on both sides "
                 "(> 1: fastnn is faster).")
    lines.append("rate: GB/s by the byte model (fastnn bench --list), GFLOP/s for matrix "
                 "products.  % peak: of the STREAM triad/copy or")
    lines.append("SGEMM figure above (over 100% at small sizes: the data sits in cache); "
                 "for DRAM-sized memory-bound rows,")
    lines.append("the median of per-round ratios of a kernel call to a STREAM call right "
                 "after it, in the same process")
    lines.append("(the shared machine's bandwidth drifts during a run; JSON: "
                 "row[\"paired_stream\"]).")
    if with_out:
        lines.append("rate and % peak use the fastnn out= time where there is one (the "
                     "kernel itself, without allocating")
        lines.append("its output), else the fresh time.")
    if any((r.get("stability") or {}).get("unstable") for r in rows):
        lines.append("UNSTABLE: the samples of some timing of the row disagreed by more than "
                     "the bound in every round; its ratios are not results.")
    if notes:
        lines.append("errors:")
        lines.extend("  " + n for n in notes)
    return "\n".join(lines)


def header(run):
    m = run.get("machine", {})
    st, sg = m.get("stream") or {}, m.get("sgemm") or {}
    fw = (m.get("workers") or {}).get("fastnn") or (m.get("workers") or {}).get("stream") or {}
    v = run.get("versions", {})
    lines = [f"fastnn bench  {run.get('created', '')}  fastnn {v.get('fastnn', '?')}  "
             f"numpy {v.get('numpy', '?')}  numba {v.get('numba', '?')}  "
             f"torch {v.get('torch', 'absent')}"]
    lines.append(f"machine: {m.get('processor') or '?'}, {m.get('cpu_count')} CPUs; numba "
                 f"{fw.get('numba_threads', '?')} threads, layer {fw.get('threading_layer', '?')}")
    if "copy_gbs" in st:
        label = f"{st['array_mib']} MiB arrays"
        if run.get("quick") or st["array_mib"] < 128:
            label += " -- QUICK: cache-resident, NOT a DRAM figure"
        lines.append(f"STREAM (numba prange, {label}): copy {st['copy_gbs']:.1f} GB/s, "
                     f"triad {st['triad_gbs']:.1f} GB/s")
    elif st:
        lines.append(f"STREAM: {st.get('error')}")
    if "gflops" in sg:
        lines.append(f"SGEMM (numpy BLAS, {sg['n']}^3 float32): {sg['gflops']:.3g} GFLOP/s")
    elif sg:
        lines.append(f"SGEMM: {sg.get('error')}")
    s = run.get("startup")
    if s and "total_s" in s:
        lines.append(f"startup (second process): import {s['import_s']:.2f} s + first call of "
                     f"{len(s['kernels'])} kernels {s['first_calls_s']:.2f} s = {s['total_s']:.2f} s")
    elif s:
        lines.append(f"startup: {s.get('error')}")
    st_ = run.get("settings", {})
    lines.append(f"each implementation in its own process; median of up to {st_.get('repeat')} "
                 f"samples after warm-up" + ("  [--quick]" if run.get("quick") else ""))
    loads = [x for x in (m.get("loadavg_start"), m.get("loadavg_end")) if x is not None]
    if loads:
        lines.append("load average (1 min): " + ", ".join(
            f"{when} {m[key]:.2f}" for when, key in (("start", "loadavg_start"),
                                                    ("end", "loadavg_end"))
            if m.get(key) is not None) + f" on {m.get('cpu_count')} CPUs")
    if loads and m.get("cpu_count") and max(loads) > 0.75 * m["cpu_count"]:
        lines.append(f"WARNING: load average up to {max(loads):.1f} on {m['cpu_count']} CPUs: "
                     "other processes compete for the cores; multi-threaded timings (OpenMP, "
                     "BLAS) are unreliable, even as ratios.")
    for g, why in (m.get("unavailable") or {}).items():
        lines.append(f"{g}: not measured ({why})")
    return "\n".join(lines)


def byte_model_table():
    """The byte and flop models as a printable table (``fastnn bench --list``)."""
    lines = ["kernel                          model           peak    counted",
             "-" * 100]
    for k in _cases.KERNELS:
        if k.name in _cases.BYTE_MODEL:
            passes, peak, what = _cases.BYTE_MODEL[k.name]
            model = f"{passes * 4} B/elt (f32)"
        else:
            factor, peak, what = _cases.FLOP_MODEL[k.name]
            model = f"{factor}*N*D*D flop"
        lines.append(f"{k.name:<32}{model:<16}{peak:<8}{what}")
    lines.append("")
    lines.append("sizes: " + ", ".join(f"{n}={'/'.join(f'{a}x{b}' for a, b in v)}"
                                        for n, v in _cases.SIZES.items())
                 + ", extra=" + "; ".join(f"{k.name}: {', '.join(k.label(*s) for s in k.extra_sizes)}"
                                          for k in _cases.KERNELS if k.extra_sizes))
    for k in _cases.KERNELS:
        names = [("gemm (its matrix products alone, a bound)" if i == "gemm" else i)
                 for i in k.builders if i not in FASTNN]
        timed = ("fastnn fresh + out=" if "fastnn_out" in k.builders
                 else "fastnn fresh (no out= parameter)")
        lines.append(f"  {k.name}: {k.doc}; {timed}; competitors: " + ", ".join(names))
    lines.append("")
    lines.append(RATE_NOTE)
    return "\n".join(lines)


# ------------------------------------------------------------------ compare
def compare(old, new):
    """A table comparing fastnn's medians in two runs (old -> new)."""
    key = lambda r: (r["kernel"], r["size"], r["dtype"])  # noqa: E731
    before = {key(r): r for r in old["results"]}
    lines = [f"compare: {old.get('created', '?')} (old) -> {new.get('created', '?')} (new)",
             f"{'kernel':<32}{'size':<16}{'dtype':<9}{'old':>10}{'new':>10}{'speed-up':>10}"
             f"{'out= old':>10}{'out= new':>10}{'x torch old':>13}{'x torch new':>13}"]
    for r in new["results"]:
        o = before.get(key(r))
        if o is None:
            continue
        t_old, t_new = _median(o, "fastnn"), _median(r, "fastnn")
        sp = f"{t_old / t_new:.2f}x" if t_old and t_new else "-"
        # Runs saved before out= timings existed have none: shown as "-".
        u_old, u_new = _median(o, "fastnn_out"), _median(r, "fastnn_out")
        xo = (o.get("speedup") or {}).get("torch")
        xn = (r.get("speedup") or {}).get("torch")
        lines.append(f"{r['kernel']:<32}{r['size']:<16}{r['dtype']:<9}{fmt_time(t_old):>10}"
                     f"{fmt_time(t_new):>10}{sp:>10}{fmt_time(u_old):>10}{fmt_time(u_new):>10}"
                     f"{_fmt_x(xo):>13}{_fmt_x(xn):>13}")
    lines.append("speed-up = old time / new time of the fresh-output call (> 1: the new run is "
                 "faster). Absolute times drift on shared machines; compare the x torch columns "
                 "too.")
    return "\n".join(lines)


# ------------------------------------------------------------------ targets
L = (32768, 1024)  # DRAM size
M = (4096, 1024)
S = (64, 256)
T = _cases.SIZES["tiny"][0]


def _find(run, kernel, shape, dtype="float32"):
    for r in run["results"]:
        if r["kernel"] == kernel and (r["n"], r["d"]) == tuple(shape) and r["dtype"] == dtype:
            return r
    return None


def _metric(run, kernel, shape, what):
    """(value, None) or (None, why-not-measured)."""
    r = _find(run, kernel, shape)
    if r is None:
        return None, "not measured in this run"
    if r.get("skipped"):
        return None, r["skipped"]
    if _median(r, "fastnn") is None:
        return None, "fastnn timing failed"
    stability = r.get("stability") or {}
    if stability.get("unstable"):
        return None, Unstable(f"samples disagree: max/min {stability['spread']:.2f} > "
                              f"{stability['bound']:g} in each of {stability['rounds']} round(s)")
    if what == "pct":
        v = r.get("pct_peak")
        return (v, None) if v is not None else (None, "no machine peak measured")
    if what == "time":
        return _median(r, "fastnn"), None
    if what == "rate_time":  # the time rates use: out= when measured
        return _median(r, r.get("rate_impl") or _rate_impl(r)), None
    v = (r.get("speedup") or {}).get(what)
    return (v, None) if v is not None else (None, f"{what} not measured")


class Unstable(str):
    """Why a target was not judged: its row's timings stayed noisy (see ``_stability``)."""


def _targets():
    """(text, evaluate) pairs; evaluate(run) -> (value, why, passed, shown)."""
    out = []

    def has_out(kernel):
        return "fastnn_out" in _cases.KERNELS_BY_NAME[kernel].builders

    def ratio(text, kernel, shape, comp, need):
        def ev(run):
            v, why = _metric(run, kernel, shape, comp)
            return v, why, (v is not None and v >= need), None if v is None else f"{v:.2f}x"
        both = " (fresh outputs)" if has_out(kernel) else ""
        out.append((f"{text}: >= {need:g}x {comp}{both}", ev))

    def pct(text, kernel, shape, need):
        def ev(run):
            v, why = _metric(run, kernel, shape, "pct")
            r = _find(run, kernel, shape)
            peak = r["peak"] if r else "peak"
            if v is None:
                return v, why, False, None
            shown = f"{v:.0f}% of {peak}"
            if has_out(kernel) and r.get("rate_impl") != "fastnn_out":
                shown += " (fresh output: no out= time)"
            return v, why, v >= need, shown
        via = " (out= time)" if has_out(kernel) else ""
        out.append((f"{text}: >= {need:g}% of peak{via}", ev))

    ls, ms = "32768x1024", "4096x1024"
    pct(f"batch norm train fwd+bwd {ls}", "batch_norm_train_fwd_bwd", L, 80)
    ratio(f"batch norm train fwd+bwd {ls}", "batch_norm_train_fwd_bwd", L, "torch", 3)
    ratio(f"batch norm train fwd+bwd {ms}", "batch_norm_train_fwd_bwd", M, "torch", 1.5)
    pct(f"batch norm eval fwd {ls}", "batch_norm_eval_fwd", L, 85)
    ratio(f"batch norm eval fwd {ls}", "batch_norm_eval_fwd", L, "torch", 4)
    for k in ("dropout_fwd", "dropout_bwd"):
        pct(f"{k} p=0.5 {ls}", k, L, 80)
        ratio(f"{k} p=0.5 {ls}", k, L, "torch", 20)

    def no_mask(run):
        params = (run.get("facts") or {}).get("dropout_backward_params")
        if params is None:
            return None, "fastnn.functional.dropout_backward not present", False, None
        ok = not any("mask" in p for p in params)
        return 1.0, None, ok, f"dropout_backward({', '.join(params)})"
    out.append(("dropout: 0 bytes of mask stored (backward regenerates it)", no_mask))

    def ce_rate(run):
        v, why = _metric(run, "cross_entropy_fwd_bwd", (4096, 1000), "rate_time")
        if v is None:
            return None, why, False, None
        fw = (run["machine"].get("workers") or {}).get("fastnn") or {}
        cores = fw.get("numba_threads") or run["machine"].get("cpu_count") or 1
        g = 4096 * 1000 / v / 1e9 / cores
        r = _find(run, "cross_entropy_fwd_bwd", (4096, 1000))
        via = "out=" if _rate_impl(r) == "fastnn_out" else "fresh output"
        return g, None, g >= 1.5, f"{g:.2f} G elements/s per core ({cores} threads, {via})"
    out.append(("fused softmax-CE fwd+bwd 4096x1000: >= 1.5 G elements/s per core (out= time)",
                ce_rate))
    ratio("fused softmax-CE fwd+bwd 4096x1000", "cross_entropy_fwd_bwd", (4096, 1000), "torch", 2)
    ratio("fused softmax-CE fwd+bwd 1024x32768", "cross_entropy_fwd_bwd", (1024, 32768), "torch", 8)
    for k in ("mse_fwd_bwd", "l1_loss_fwd_bwd", "hinge_fwd_bwd"):
        pct(f"{k} {ls}", k, L, 75)
        ratio(f"{k} {ls}", k, L, "torch", 3)
    for k in ("l2_penalty", "l1_penalty", "max_norm_"):
        pct(f"{k} {ls}", k, L, 75)
        ratio(f"{k} {ls}", k, L, "torch", 2)
    for k in ("linear_fwd", "linear_bwd"):
        pct(f"{k} (bias+ReLU) 4096x1024x1024", k, M, 85)
        ratio(f"{k} (bias+ReLU) 4096x1024x1024", k, M, "torch", 0.95)

    def lin_small(run):
        ts = [_metric(run, k, (256, 1024), "time") for k in ("linear_fwd", "linear_bwd")]
        rows = [_find(run, k, (256, 1024)) for k in ("linear_fwd", "linear_bwd")]
        if any(v is None for v, _ in ts):
            return None, next(w for v, w in ts if v is None), False, None
        tt = [_median(r, "torch") for r in rows]
        if any(t is None for t in tt):
            return None, "torch not measured", False, None
        v = sum(tt) / sum(v for v, _ in ts)
        return v, None, v >= 1.2, f"{v:.2f}x"
    out.append(("linear+bias+ReLU fwd+bwd 256x1024x1024: >= 1.2x torch", lin_small))

    for k in _cases.KERNELS:
        if "torch" in k.builders:
            ratio(f"{k.name} 64x256", k.name, S, "torch", 3)
        else:
            ratio(f"{k.name} 64x256", k.name, S, "sklearn", 3)
    for k in _cases.KERNELS:
        def overhead(run, k=k):
            v, why = _metric(run, k.name, T, "time")
            if v is None:
                return None, why, False, None
            return v, None, v <= 2e-6, fmt_time(v)
        out.append((f"{k.name} {T[0]}x{T[1]}: call overhead <= 2 us", overhead))

    pct(f"standardization fit+transform {ls}", "standard_scaler_fit_transform", L, 70)
    ratio(f"standardization fit+transform {ls}", "standard_scaler_fit_transform", L, "sklearn", 3)

    def pca_gemm(run):
        v, why = _metric(run, "pca_whiten_fit_transform", L, "gemm")
        if v is None:
            return None, why, False, None
        over = 1.0 / v  # fastnn time / matrix-product time
        return over, None, over <= 1.25, f"{over:.2f}x its matrix products"
    out.append((f"PCA whitening {ls}: <= 1.25x its matrix products", pca_gemm))
    ratio(f"PCA whitening {ls}", "pca_whiten_fit_transform", L, "sklearn", 3)

    def startup(run):
        s = run.get("startup")
        if not s or "total_s" not in s:
            return None, (s or {}).get("error", "not measured (--quick or --no-startup)"), False, None
        return s["total_s"], None, s["total_s"] <= 1.0, f"{s['total_s']:.2f} s"
    out.append(("import + first call of every kernel, second process: <= 1 s", startup))
    return out


TARGETS = _targets()


def check(run):
    """(text, n_pass, n_miss, n_skip): one PASS/MISS/SKIP line per target."""
    lines = ["targets (issue 4; fp32; ratios from this run; % of peak and G elements/s from "
             "the out= time where the kernel has one, x torch/sklearn from fresh outputs):"]
    counts = {"PASS": 0, "MISS": 0, "SKIP": 0, "UNSTABLE": 0}
    width = max(len(text) for text, _ in TARGETS)
    for text, ev in TARGETS:
        v, why, ok, shown = ev(run)
        if isinstance(why, Unstable):
            status = "UNSTABLE"
        else:
            status = "SKIP" if v is None else ("PASS" if ok else "MISS")
        counts[status] += 1
        detail = shown if v is not None else f"({why})"
        lines.append(f"  {status}  {text:<{width}} {detail}")
    lines.append(f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['UNSTABLE']} UNSTABLE, "
                 f"{counts['SKIP']} SKIP (SKIP: not measured in this run or kernel not present; "
                 "UNSTABLE: the timings disagreed, rerun on a quieter machine)")
    return "\n".join(lines), counts["PASS"], counts["MISS"], counts["SKIP"]
