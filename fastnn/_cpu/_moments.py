"""Chan's pairwise merge of (count, mean, M2) statistics, shared by the kernels.

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
