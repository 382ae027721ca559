"""Noise detection: a row whose samples disagree is measured again, or marked UNSTABLE.

On a shared machine another process can hold the cores for part of a
measurement: one run timed torch's batch-norm forward+backward at 2x8 as
40 ms (0.1 ms in a quiet rerun) and printed "1702x torch: PASS".  Every
timing keeps its samples; the *spread* of a timing is max / min of its
samples (one sample from a disturbed second and the rest quiet give a large
spread).  A row whose worst spread exceeds :data:`SPREAD_BOUND` is measured
again, every implementation interleaved as before, up to :data:`MAX_ROUNDS`
rounds; the round with the smallest worst spread is kept, and if even that
one exceeds the bound the row is UNSTABLE: ``fastnn bench --check`` prints
UNSTABLE, never PASS or MISS, for a target that reads it.  A disturbance that
slows every sample of one timing alike leaves its spread at 1, so ``--check``
also measures every row twice, interleaved, and calls it UNSTABLE when a
competitor / fastnn ratio moved by more than the bound between the rounds.
"""

# max / min of a timing's samples above which the timing is not trusted.
# Quiet rows on the project's 2-core VM show 1.0-1.4 (medians of 7 samples);
# a disturbance that slows some samples 2x or more is noise, not the kernel.
SPREAD_BOUND = 2.0
# Rounds per row at most (the first one included).
MAX_ROUNDS = 3


def spread(times):
    """Worst max/min over the timings of a row that have samples (1.0 when none do)."""
    worst = 1.0
    for t in times.values():
        samples = t.get("samples") if isinstance(t, dict) else None
        if samples and min(samples) > 0:
            worst = max(worst, max(samples) / min(samples))
    return worst


def _ratios(times):
    """Competitor / fastnn median ratios of a round (the row's verdicts)."""
    t = times.get("fastnn")
    base = t.get("median") if isinstance(t, dict) else None
    if not base:
        return {}
    return {k: v["median"] / base for k, v in times.items()
            if k != "fastnn" and isinstance(v, dict) and v.get("median")}


def ratio_moved(a, b):
    """Largest factor by which a ratio moved between two rounds (1.0: none)."""
    ra, rb = _ratios(a), _ratios(b)
    return max((max(ra[k], rb[k]) / min(ra[k], rb[k]) for k in ra.keys() & rb.keys()
                if min(ra[k], rb[k]) > 0), default=1.0)


def measure_stably(measure_round, bound=SPREAD_BOUND, max_rounds=MAX_ROUNDS, confirm=False):
    """Run ``measure_round()`` until its timings agree, at most ``max_rounds`` times.

    Parameters
    ----------
    measure_round : callable
        Measures every implementation of the row once (interleaved) and
        returns ``(times, extra)``: ``times`` maps implementation names to
        timing dicts with ``samples``; ``extra`` is kept with its round.
    bound : float
        The largest acceptable spread (see :func:`spread`).
    max_rounds : int >= 1
    confirm : bool
        Always measure a second round, and call the row unstable when any
        competitor / fastnn ratio moved by more than ``bound`` between the two
        kept rounds: this catches a disturbance that slowed every sample of
        one timing alike (its spread stays 1).  ``fastnn bench --check`` uses
        it for the rows its verdicts read.

    Returns
    -------
    (times, extra, stability)
        The kept round's ``times`` and ``extra``, and a dict ``{"rounds",
        "spreads", "spread", "unstable", "bound"}`` (and ``"moved"``, the
        ratio movement between the two best rounds, when ``confirm``).
    """
    rounds = []
    while True:
        times, extra = measure_round()
        rounds.append((spread(times), times, extra))
        enough = len(rounds) >= (2 if confirm else 1)
        if (enough and rounds[-1][0] <= bound) or len(rounds) >= max(max_rounds, 2 * confirm):
            break
    ranked = sorted(rounds, key=lambda r: r[0])
    best_spread, times, extra = ranked[0]
    stability = {"rounds": len(rounds), "spreads": [r[0] for r in rounds],
                 "spread": best_spread, "unstable": best_spread > bound, "bound": bound}
    if confirm:
        stability["moved"] = ratio_moved(ranked[0][1], ranked[1][1])
        stability["unstable"] |= stability["moved"] > bound
    return times, extra, stability


# A before/after ratio inside this band is "same" even when the rounds agree
# more closely: run-to-run drift on the project's VMs reaches ~10%.
BEFORE_AFTER_FLOOR = 1.10


def before_after(before, after, floor=BEFORE_AFTER_FLOOR):
    """The verdict on one row of a before/after comparison, from repeated rounds.

    Each side is the list of one row's times (medians), one per round, the
    rounds of the two sides alternated in one run.  The ratio compares the
    best (smallest) time of each side; the noise is the larger spread
    (max / min) between rounds of the same code.  A row is slower only when
    its ratio exceeds both the noise and ``floor``, faster only when the
    inverse does.

    Parameters
    ----------
    before, after : sequence of float
        Times in seconds (at least one each; positive).
    floor : float
        The smallest change ever called a change.

    Returns
    -------
    dict
        ``ratio`` (after / before: > 1 is slower), ``noise``, ``threshold``
        and ``verdict``: ``"slower"``, ``"faster"`` or ``"same"``.

    Examples
    --------
    >>> before_after([1.0, 1.02], [1.5, 1.49])["verdict"]
    'slower'
    >>> before_after([1.0, 1.6], [1.5, 1.49])["verdict"]     # the base's rounds disagree
    'same'
    """
    if not before or not after or min(min(before), min(after)) <= 0:
        raise ValueError(f"before_after needs positive times on both sides, got {before!r} "
                         f"and {after!r}")
    ratio = min(after) / min(before)
    noise = max(max(before) / min(before), max(after) / min(after))
    threshold = max(noise, floor)
    verdict = "slower" if ratio > threshold else "faster" if ratio < 1 / threshold else "same"
    return {"ratio": ratio, "noise": noise, "threshold": threshold, "verdict": verdict}
