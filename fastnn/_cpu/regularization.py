"""CPU kernels: L2 / L1 weight penalties with their gradients, max-norm projection.

Each penalty is one fused pass: it reads ``w`` once, accumulates the penalty
in float64 and writes the gradient.  Gradients are computed in float64 and
rounded once to the dtype of ``w``.
"""
import math

import numpy as np
from numba import prange

from fastnn._config import EXACT_FASTMATH, dual_jit, jit
from fastnn._cpu._math import sign


@jit
def _l2_range(w, grad, two_lam):
    acc = 0.0
    for i in range(w.size):
        v = np.float64(w[i])
        acc += v * v
        grad[i] = v * two_lam
    return acc


@jit
def _l1_range(w, grad, lam):
    acc = 0.0
    for i in range(w.size):
        v = np.float64(w[i])
        acc += abs(v)
        grad[i] = lam * sign(v)
    return acc


@dual_jit
def l2_penalty(w, grad, lam, n_chunks):
    """sum(w**2) (float64) and grad = 2 * lam * w, for flat C-contiguous w/grad."""
    n = w.size
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):  # range in the serial twin
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        partial[c] = _l2_range(w[lo:hi], grad[lo:hi], 2.0 * lam)
    return partial.sum()


@dual_jit
def l1_penalty(w, grad, lam, n_chunks):
    """sum(|w|) (float64) and grad = lam * sign(w), for flat C-contiguous w/grad."""
    n = w.size
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        partial[c] = _l1_range(w[lo:hi], grad[lo:hi], lam)
    return partial.sum()


# Below this sum of squares the squares of a row's entries may have
# underflowed (entries under ~1e-154 in float64) and the plain norm is
# inexact or 0: such rows take the scaled norm.  Above it every square that
# matters is a normal number.
_TINY_SUM_SQUARES = 1e-280

# The two helpers below run without ``reassoc``/``arcp``: with them LLVM may
# turn ``w * (c / norm)`` into ``(w * c) / norm`` and ``(w / big) ** 2`` into
# ``w * w / (big * big)``, which overflow or underflow exactly on the rows
# that need the care (w = [3e300, 4e300], c = 1e300 became [inf, inf]).


@jit(fastmath=EXACT_FASTMATH)
def _scaled_root(row):
    """(big, root) with ||row|| = big * root, neither overflowing nor underflowing.

    The largest magnitude is factored out first, as LAPACK's nrm2 does, so
    even a row whose norm exceeds the float64 range (two entries of 1.7e308)
    is handled.  A row of zeros gives (1, 0); NaN or inf give a NaN root.
    """
    big = 0.0
    for j in range(row.size):
        big = max(big, abs(np.float64(row[j])))
    if big == 0.0:
        return 1.0, 0.0
    acc = 0.0
    for j in range(row.size):
        v = np.float64(row[j]) / big
        acc += v * v
    return big, math.sqrt(acc)


@jit(fastmath=EXACT_FASTMATH)
def _rescale(row, big, c, root):
    """row <- c * row / (big * root), as (row / big) * (c / root): each factor is
    representable (|row / big| <= 1, c / root >= c / sqrt(n)) where c / big
    may underflow ([3e300, 4e300] with c = 1e-300)."""
    factor = c / root
    for j in range(row.size):
        row[j] = (np.float64(row[j]) / big) * factor


@dual_jit
def max_norm(weight, c):
    """In place: each row r of a 2-D weight (any layout) with ||w_r|| > c becomes c * w_r / ||w_r||.

    Rows within the bound are not written at all, so they stay bit-for-bit
    unchanged.  A row holding NaN or inf has no finite rescaling: its root is
    NaN, the test fails and the row is left as it is.
    """
    for r in prange(weight.shape[0]):
        row = weight[r]
        acc = 0.0
        for j in range(row.size):
            v = np.float64(row[j])
            acc += v * v
        big, root = 1.0, math.sqrt(acc)
        if acc < _TINY_SUM_SQUARES or acc == math.inf:
            big, root = _scaled_root(row)      # tiny or huge entries, or NaN/inf
        if c / big < root:                     # ||w_r|| = big * root > c, without overflow
            _rescale(row, big, c, root)
