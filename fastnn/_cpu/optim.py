"""The optimizer update rules, one element at a time, written once for every device.

Plain Python on float64 scalars: :mod:`fastnn.optim` compiles them with
numba for the CPU step, :mod:`fastnn._cuda.optim` as CUDA device functions,
and :mod:`fastnn._cpu.engine` into its fused training step, so every device
runs the same math.  Results are rounded to the parameter's dtype only when
stored.  They live here, below all three, so that none imports another.
"""
import math

__all__ = ["sgd_rule", "adam_rule"]


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
