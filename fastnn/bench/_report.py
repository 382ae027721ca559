"""Tables and comparisons between runs (the targets of --check: ``_targets``).

Two fastnn times per kernel: ``fastnn`` returns fresh outputs, as every
competitor does, and ``fastnn_out`` (kernels with an ``out=`` parameter)
writes into a buffer reused across calls.  Speed-ups ("x torch", "x numpy")
and the ratio targets (``_targets``) use the fresh time: every library allocates its
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


def median(row, impl):
    """The median time of one implementation in a row, or None (absent or failed)."""
    t = row["times"].get(impl)
    return t.get("median") if isinstance(t, dict) else None


def rate_impl(row):
    """The fastnn time that rates measure: out= when timed, else fresh."""
    return "fastnn_out" if median(row, "fastnn_out") is not None else "fastnn"


def derive(row, run):
    """Add rate, % of peak and speed-ups to a result row (in place).

    Speed-ups divide by the fresh-output time; the rate (and % of peak)
    uses the out= time when there is one (``row["rate_impl"]`` says which).
    """
    row["speedup"], row["rate"], row["pct_peak"] = {}, None, None
    row["rate_impl"] = None
    t = median(row, "fastnn")
    if t is not None:
        for impl in row["times"]:
            other = median(row, impl)
            if impl not in FASTNN and other is not None:
                row["speedup"][impl] = other / t
    impl = rate_impl(row)
    t = median(row, impl)
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


def _row_cells(r, shown, with_out):
    """The cells of one result row of :func:`table` (4 cells for a skipped row)."""
    if r.get("skipped"):
        return [r["kernel"], r["size"], r["dtype"], "skipped: " + r["skipped"]]
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
    return cells


def _aligned(head, body):
    """The header, rule and body lines, columns padded (text left, numbers right)."""
    widths = [max(len(h), *(len(b[i]) for b in body if len(b) == len(head) and i < len(b)))
              if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    for b in body:
        if len(b) != len(head):
            lines.append("  ".join(c.ljust(w) for c, w in zip(b[:3], widths[:3])) + "  " + b[3])
        else:
            lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(b, widths))))
    return lines


def _legend(rows, with_out, notes):
    """The lines under the table: what the columns mean, UNSTABLE, errors."""
    lines = ["times: median per call; fastnn returns fresh outputs like every competitor"
             + ("; fastnn out= writes into a buffer reused across calls." if with_out
                else "."),
             "x <competitor>: competitor time / fastnn time, fresh outputs on both sides "
             "(> 1: fastnn is faster).",
             "rate: GB/s by the byte model (fastnn bench --list), GFLOP/s for matrix "
             "products.  % peak: of the STREAM triad/copy or",
             "SGEMM figure above (over 100% at small sizes: the data sits in cache); "
             "for DRAM-sized memory-bound rows,",
             "the median of per-round ratios of a kernel call to a STREAM call right "
             "after it, in the same process",
             "(the shared machine's bandwidth drifts during a run; JSON: "
             "row[\"paired_stream\"])."]
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
    return lines


def table(run):
    """The result table as a string (one line per kernel/size/dtype)."""
    rows = run["results"]
    shown = [c for c in SHOWN if any(c in r["times"] for r in rows)]
    with_out = any("fastnn_out" in r["times"] for r in rows)
    head = (["kernel", "size", "dtype", "fastnn"] + (["fastnn out="] if with_out else [])
            + shown + [f"x {c}" for c in shown] + ["rate", "% peak"])
    body = [_row_cells(r, shown, with_out) for r in rows]
    notes = [f"{r['kernel']} {r['size']} {r['dtype']} [{impl}]: {t['error']}"
             for r in rows if not r.get("skipped")
             for impl, t in r["times"].items() if "error" in t]
    return "\n".join([header(run), ""] + _aligned(head, body) + [""]
                     + _legend(rows, with_out, notes))


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
                     f"{len(s['kernels'])} kernels {s['first_calls_s']:.2f} s = "
                     f"{s['total_s']:.2f} s")
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
                 + ", extra=" + "; ".join(
                     f"{k.name}: {', '.join(k.label(*s) for s in k.extra_sizes)}"
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
        t_old, t_new = median(o, "fastnn"), median(r, "fastnn")
        sp = f"{t_old / t_new:.2f}x" if t_old and t_new else "-"
        # Runs saved before out= timings existed have none: shown as "-".
        u_old, u_new = median(o, "fastnn_out"), median(r, "fastnn_out")
        xo = (o.get("speedup") or {}).get("torch")
        xn = (r.get("speedup") or {}).get("torch")
        lines.append(f"{r['kernel']:<32}{r['size']:<16}{r['dtype']:<9}{fmt_time(t_old):>10}"
                     f"{fmt_time(t_new):>10}{sp:>10}{fmt_time(u_old):>10}{fmt_time(u_new):>10}"
                     f"{_fmt_x(xo):>13}{_fmt_x(xn):>13}")
    lines.append("speed-up = old time / new time of the fresh-output call (> 1: the new run is "
                 "faster). Absolute times drift on shared machines; compare the x torch columns "
                 "too.")
    return "\n".join(lines)
