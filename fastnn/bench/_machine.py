"""The machine's own limits, measured in the same run as the kernels.

* STREAM copy (``a = b``) and triad (``a = b + s * c``) with numba ``prange``
  kernels, the same tool the fastnn kernels are built with.  Bytes are
  counted as STREAM counts them: 16 B per element for copy and 24 for triad
  in float64 (the write-allocate read of ``a`` is not counted, exactly as the
  kernel byte models do not count it).  Arrays must be much larger than the
  last-level cache to measure DRAM: 128 MiB each in a normal run.
* SGEMM: a square float32 matrix product through numpy's BLAS
  (``2 * n**3`` flops), the compute ceiling for the linear layer.

Each of these runs in its own worker process (see ``fastnn.bench._runner``)
so numba's and OpenBLAS's thread pools never meet.
"""
import gc
import time

import numpy as np
from numba import prange

from fastnn._config import jit

from ._timing import measure


@jit(parallel=True)
def stream_copy(a, b):
    for i in prange(a.shape[0]):
        a[i] = b[i]


@jit(parallel=True)
def stream_triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def measure_stream(array_mib=128, repeat=7, budget_s=3.0):
    """STREAM copy and triad bandwidth in GB/s (1 GB = 1e9 bytes)."""
    n = int(array_mib) * (1 << 20) // 8
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    copy = measure(lambda: stream_copy(a, b), repeat=repeat, budget_s=budget_s, min_sample_s=0)
    triad = measure(lambda: stream_triad(a, b, c, 3.0), repeat=repeat, budget_s=budget_s,
                    min_sample_s=0)
    if not (a[0] == 7.0 and a[-1] == 7.0):  # b + 3 c: the kernel really ran
        raise RuntimeError("STREAM triad produced a wrong result")
    return {
        "array_mib": int(array_mib),
        "copy_gbs": 16 * n / copy["median"] / 1e9,
        "triad_gbs": 24 * n / triad["median"] / 1e9,
        "copy_best_gbs": 16 * n / copy["min"] / 1e9,
        "triad_best_gbs": 24 * n / triad["min"] / 1e9,
        "copy": copy,
        "triad": triad,
    }


def paired_stream(fn, array_mib=128, pairs=7):
    """Alternate ``fn()`` with STREAM copy and triad, one call of each per round.

    The shared machine's bandwidth drifts by tens of % within seconds, so a
    kernel's "% of STREAM" is only meaningful against a probe taken at the
    same moment: each round times one kernel call, one copy and one triad
    back to back in this process (the kernel's own worker and thread pool).

    Returns
    -------
    dict
        ``kernel``, ``copy``, ``triad``: per-round seconds; ``copy_bytes``,
        ``triad_bytes``: the traffic the probes count.
    """
    n = int(array_mib) * (1 << 20) // 8
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    probes = {"kernel": fn, "copy": lambda: stream_copy(a, b),
              "triad": lambda: stream_triad(a, b, c, 3.0)}
    for f in probes.values():   # page faults, thread wake-up
        f()
    out = {key: [] for key in probes}
    perf = time.perf_counter
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(pairs):
            for key, f in probes.items():
                t0 = perf()
                f()
                out[key].append(perf() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    out.update(copy_bytes=16 * n, triad_bytes=24 * n)
    return out


def measure_sgemm(n=2048, repeat=7, budget_s=3.0):
    """float32 ``n x n`` times ``n x n`` through numpy's BLAS, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t = measure(lambda: np.matmul(a, b, out=out), repeat=repeat, budget_s=budget_s,
                min_sample_s=0)
    return {"n": int(n), "gflops": 2.0 * n ** 3 / t["median"] / 1e9,
            "best_gflops": 2.0 * n ** 3 / t["min"] / 1e9, "time": t}
