"""Float64 naive references: softmax, log_softmax, cross-entropy (torch semantics)."""
import numpy as np


def log_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return (x - m) - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    return np.exp(log_softmax(x, axis))


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Loss and gradient, row by row, straight from the definition.

    Row i (not ignored) has target distribution
    q_ij = (1 - eps) w[t_i] [j == t_i] + (eps / C) w_j, loss -sum_j q_ij log p_ij
    and gradient p_ij sum_j q_ij - q_ij.  "mean" divides both by the sum of
    w[t_i] over the rows not ignored.  Returns (loss, dlogits); for "none"
    the gradient is that of the sum of the losses.
    """
    x = np.asarray(logits, dtype=np.float64)
    n, c = x.shape
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = float(label_smoothing)
    losses = np.zeros(n)
    grad = np.zeros((n, c))
    denom = 0.0
    for i in range(n):
        t = int(target[i])
        if t == ignore_index:
            continue
        denom += w[t]
        logp = log_softmax(x[i])
        q = (eps / c) * w
        q[t] += (1.0 - eps) * w[t]
        losses[i] = -np.sum(q * logp)
        grad[i] = np.exp(logp) * np.sum(q) - q
    if reduction == "none":
        return losses, grad
    if reduction == "sum":
        return float(np.sum(losses)), grad
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(np.sum(losses)) / denom), grad / denom
