"""Per-column (count, mean, M2) statistics and Chan's pairwise merge, shared by the kernels.

M2 is the sum of squared deviations from the mean, so merging is exact up to
float64 rounding and loses nothing to large offsets (never E[x^2] - E[x]^2).
"""
import numpy as np

from fastnn._config import jit


@jit
def merge_moment(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Merge two scalar (count, mean, M2) triples; returns the merged triple.

    Two empty triples (n_a + n_b == 0) give a NaN mean and M2 (0 / 0).
    """
    n = n_a + n_b
    fb = n_b / n
    d = mean_b - mean_a
    return n, mean_a + d * fb, m2_a + m2_b + d * d * (n_a * fb)


@jit
def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Merge two per-column (count, mean, M2) triples, column by column.

    Returns the merged (count, mean, M2) with mean and M2 as new arrays; two
    empty triples give a copy of the first.
    """
    n = n_a + n_b
    mean = np.empty_like(mean_a)
    m2 = np.empty_like(m2_a)
    if n == 0:
        mean[:] = mean_a
        m2[:] = m2_a
        return n, mean, m2
    for j in range(mean_a.shape[0]):
        _, mean[j], m2[j] = merge_moment(n_a, mean_a[j], m2_a[j], n_b, mean_b[j], m2_b[j])
    return n, mean, m2


@jit
def merge_parts(part_n, part_mean, part_m2):
    """Merge per-chunk rows of (count, mean, M2) in chunk order; returns (n, mean, m2).

    A fixed order, so the result does not depend on which thread finished first.
    """
    total = 0.0
    mean = np.zeros(part_mean.shape[1])
    m2 = np.zeros(part_mean.shape[1])
    for k in range(part_n.shape[0]):
        total, mean, m2 = merge_moments(total, mean, m2, part_n[k], part_mean[k], part_m2[k])
    return total, mean, m2


# Rows per block in rows_moments: a block of about 32768 elements (128 KiB of
# float32) stays in L2 between the two passes over it.
BLOCK_ELEMENTS = 1 << 15


@jit
def rows_moments(x, lo, hi, mean, m2):
    """Per-column mean and M2 of rows ``lo:hi`` of ``x``, written into ``mean``/``m2``.

    Returns the row count as a float.  The rows are walked in cache-sized
    blocks: a two-pass mean and M2 per block (the second pass hits the
    cache, so x is read from memory once), merged into the running triple
    with Chan's formula.  Two passes per block measured ~1.5x faster than a
    row-by-row Welford update and are exact for any offset.  NaN in a column
    makes its mean and M2 NaN.
    """
    d = x.shape[1]
    block = max(1, BLOCK_ELEMENTS // max(d, 1))
    s = np.empty(d)
    q = np.empty(d)
    mean[:] = 0.0
    m2[:] = 0.0
    count = 0.0
    for b0 in range(lo, hi, block):
        b1 = min(b0 + block, hi)
        nb = np.float64(b1 - b0)
        # Four rows per sweep: the accumulators s and q are loaded and
        # stored once per four elements (measured 1.4x on float32).
        s[:] = 0.0
        i = b0
        while i + 4 <= b1:
            r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            for j in range(d):
                s[j] += ((np.float64(r0[j]) + np.float64(r1[j]))
                         + (np.float64(r2[j]) + np.float64(r3[j])))
            i += 4
        while i < b1:
            row = x[i]
            for j in range(d):
                s[j] += row[j]
            i += 1
        for j in range(d):
            s[j] /= nb
        q[:] = 0.0
        i = b0
        while i + 4 <= b1:
            r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            for j in range(d):
                m = s[j]
                t0, t1, t2, t3 = r0[j] - m, r1[j] - m, r2[j] - m, r3[j] - m
                q[j] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
            i += 4
        while i < b1:
            row = x[i]
            for j in range(d):
                t = row[j] - s[j]
                q[j] += t * t
            i += 1
        for j in range(d):
            _, mean[j], m2[j] = merge_moment(count, mean[j], m2[j], nb, s[j], q[j])
        count += nb
    return count
