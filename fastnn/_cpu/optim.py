"""The optimizer update rules, one element at a time, written once for every device.

:func:`sgd_rule` and :func:`adam_rule` are plain Python on float64 scalars:
:func:`sgd_kernel` and :func:`adam_kernel` below compile them with numba for
the CPU step (launched by :mod:`fastnn._cpu.backend`), :mod:`fastnn._cuda.optim`
as CUDA device functions, and :mod:`fastnn._cpu.engine` into its fused
training step, so every device runs the same math.  Results are rounded to
the parameter's dtype only when stored.  They live here, below all three, so
that none imports another.
"""
import math

import numpy as np
from numba import prange

from fastnn._config import dual_jit, jit

__all__ = ["sgd_rule", "adam_rule", "adam_corrections", "sgd_kernel", "adam_kernel"]


def sgd_rule(w, g, buf, lr, weight_decay, momentum, nesterov, first):
    """One element of an SGD step: returns (new w, new momentum buffer).

    ``buf`` is ignored when ``first`` (the buffer starts as the gradient, as
    in torch) and returned unchanged without momentum.
    """
    if weight_decay != 0.0:   # skipped, not multiplied by 0: inf * 0 would be NaN
        g = g + weight_decay * w
    if momentum != 0.0:
        buf = g if first else momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return w - lr * g, buf


def adam_rule(w, g, m, v, lr, beta1, beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled):
    """One element of an Adam / AdamW step: returns (new w, new m, new v).

    ``bias1 = 1 - beta1**t`` and ``bias2_sqrt = sqrt(1 - beta2**t)`` are the
    bias corrections of step t (from 1), computed once per parameter.
    """
    if weight_decay != 0.0:
        if decoupled:
            w = w * (1.0 - lr * weight_decay)
        else:
            g = g + weight_decay * w
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    return w - (lr / bias1) * m / (math.sqrt(v) / bias2_sqrt + eps), m, v


def adam_corrections(beta1, beta2, t):
    """Adam's bias corrections of step ``t`` (from 1): ``(1 - beta1**t, sqrt(1 - beta2**t))``.

    The power of a float exponent: Python's ``b ** t`` is libm's ``pow``, and
    so is this compiled (numba raises a float to an INTEGER power by
    repeated squaring, whose last bit differed), so :class:`fastnn.optim.Adam`
    and the compiled engine get the same corrections.
    """
    tf = float(t)
    return 1.0 - beta1 ** tf, math.sqrt(1.0 - beta2 ** tf)


# -- the rules compiled for the CPU: one fused loop per parameter ------------

_sgd_rule = jit(sgd_rule)
_adam_rule = jit(adam_rule)


@dual_jit
def sgd_kernel(w, g, buf, lr, weight_decay, momentum, nesterov, first):
    """In place over 2-D views: w (and buf, with momentum) updated by :func:`sgd_rule`."""
    n, m = w.shape
    for i in prange(n):
        for j in range(m):
            b = np.float64(buf[i, j]) if momentum != 0.0 and not first else 0.0
            nw, nb = _sgd_rule(np.float64(w[i, j]), np.float64(g[i, j]), b, lr, weight_decay,
                               momentum, nesterov, first)
            w[i, j] = nw
            if momentum != 0.0:
                buf[i, j] = nb


@dual_jit
def adam_kernel(w, g, m, v, lr, beta1, beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled):
    """In place over 2-D views: w, m, v updated by :func:`adam_rule`."""
    n, k = w.shape
    for i in prange(n):
        for j in range(k):
            nw, nm, nv = _adam_rule(np.float64(w[i, j]), np.float64(g[i, j]),
                                    np.float64(m[i, j]), np.float64(v[i, j]), lr, beta1, beta2,
                                    bias1, bias2_sqrt, eps, weight_decay, decoupled)
            w[i, j] = nw
            m[i, j] = nm
            v[i, j] = nv
