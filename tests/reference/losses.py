"""Float64 references for the hinge, MSE, MAE and BCE-with-logits losses (written for clarity)."""
import numpy as np


def _reduce(per_sample, reduction, count):
    if reduction == "none":
        return per_sample
    total = float(np.sum(per_sample))
    if reduction == "sum":
        return total
    return total / count if count else float("nan")


def hinge(scores, target, margin=1.0, reduction="mean"):
    """(loss, dscores): the multiclass SVM loss, one sample and one class at a time."""
    s = np.asarray(scores, dtype=np.float64)
    n, c = s.shape
    per_sample = np.zeros(n)
    grad = np.zeros((n, c))
    for i in range(n):
        y = int(target[i])
        for j in range(c):
            if j == y:
                continue
            m = s[i, j] - s[i, y] + margin
            if m > 0:
                per_sample[i] += m
                grad[i, j] += 1.0
                grad[i, y] -= 1.0
    if reduction == "mean" and n:
        grad /= n
    return _reduce(per_sample, reduction, n), grad


def mse(pred, target, reduction="mean"):
    r = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    grad = 2.0 * r
    if reduction == "mean" and r.size:
        grad /= r.size
    return _reduce(r * r, reduction, r.size), grad


def mae(pred, target, reduction="mean"):
    r = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    grad = np.sign(r)
    if reduction == "mean" and r.size:
        grad /= r.size
    return _reduce(np.abs(r), reduction, r.size), grad


def bce_with_logits(logits, target, reduction="mean"):
    """(loss, dlogits): log(1 + e^x) - x t (np.logaddexp), gradient sigmoid(x) - t."""
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    grad = 0.5 * (1.0 + np.tanh(0.5 * x)) - t      # sigmoid, by another formula
    if reduction == "mean" and x.size:
        grad /= x.size
    return _reduce(np.logaddexp(0.0, x) - x * t, reduction, x.size), grad
