"""CPU kernels: L2 / L1 weight penalties with their gradients, max-norm projection.

Each penalty is one fused pass: it reads ``w`` once, accumulates the penalty
in float64 and writes the gradient.  Gradients are computed in float64 and
rounded once to the dtype of ``w``.
"""
import math

import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit
from fastnn._cpu._math import _sign


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
        grad[i] = lam * _sign(v)
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


@dual_jit
def max_norm(weight, c):
    """In place: each row r of a 2-D weight (any layout) with ||w_r|| > c becomes c * w_r / ||w_r||.

    Rows within the bound are not written at all, so they stay bit-for-bit
    unchanged.  A row holding NaN or inf gets a NaN norm, fails ``> c`` and
    is left as it is.
    """
    for r in prange(weight.shape[0]):
        acc = 0.0
        for j in range(weight.shape[1]):
            v = np.float64(weight[r, j])
            acc += v * v
        norm = math.sqrt(acc)
        if norm == math.inf:
            # the squares overflowed (|w| > 1e154 in float64): rescale by the
            # largest magnitude first, so a huge finite row still gets norm c
            big = 0.0
            for j in range(weight.shape[1]):
                big = max(big, abs(np.float64(weight[r, j])))
            acc = 0.0
            for j in range(weight.shape[1]):
                v = np.float64(weight[r, j]) / big
                acc += v * v
            norm = big * math.sqrt(acc)
        if norm > c:
            factor = c / norm
            for j in range(weight.shape[1]):
                weight[r, j] = np.float64(weight[r, j]) * factor
