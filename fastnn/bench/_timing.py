"""Timing: warm up, then medians of many repeats.

The first call of a kernel compiles it (or loads it from numba's cache), so
it is timed separately and never counted.  Each *sample* runs the callable
``number`` times back to back, with ``number`` chosen so that a sample lasts
at least ``min_sample_s`` (a 2 us call is timed over thousands of calls, a
0.1 s call once); the per-call time of a sample is its duration / number.
The garbage collector is off while sampling, as in :mod:`timeit`.
"""
import gc
import statistics
import time


def measure(fn, *, repeat=7, min_sample_s=2e-3, budget_s=2.0, min_repeat=3):
    """Time ``fn()``; return a dict of per-call seconds.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    repeat : int
        Number of samples wanted.
    min_sample_s : float
        A sample runs ``fn`` enough times to last at least this long.
    budget_s : float
        Stop taking samples once this much time has been spent, provided at
        least ``min_repeat`` samples were taken (slow competitors on large
        sizes would otherwise dominate the run).

    Returns
    -------
    dict
        ``median``, ``min`` (seconds per call), ``samples`` (list),
        ``number`` (calls per sample) and ``first_call`` (seconds, includes
        JIT compilation or cache loading).
    """
    perf = time.perf_counter
    t0 = perf()
    fn()
    first = perf() - t0
    # A second untimed call: the first may include compile or cache loading,
    # so it would underestimate ``number``; this one also warms caches.
    t0 = perf()
    fn()
    once = max(perf() - t0, 1e-7)
    number = max(1, min(int(min_sample_s / once) + 1, 1_000_000))

    # A slow call (number == 1) was itself a warm sample: keep it.  A call
    # longer than the whole budget gets two samples, not three.
    samples = [once] if number == 1 else []
    spent = once if number == 1 else 0.0
    if once > budget_s:
        min_repeat = min(min_repeat, 2)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < max(repeat, 1):
            t0 = perf()
            for _ in range(number):
                fn()
            dt = perf() - t0
            samples.append(dt / number)
            spent += dt
            if spent > budget_s and len(samples) >= min(min_repeat, repeat):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "samples": samples,
        "number": number,
        "first_call": first,
    }
