"""Float64 references for the weight penalties and the max-norm projection."""
import numpy as np


def l2_penalty(w, lam):
    w = np.asarray(w, dtype=np.float64)
    return lam * float(np.sum(w * w)), 2.0 * lam * w


def l1_penalty(w, lam):
    w = np.asarray(w, dtype=np.float64)
    return lam * float(np.sum(np.abs(w))), lam * np.sign(w)


def max_norm(weight, c):
    """A new float64 array: rows with norm > c rescaled to norm c, the rest unchanged."""
    w = np.array(weight, dtype=np.float64)
    for r in range(w.shape[0]):
        norm = np.sqrt(np.sum(w[r] ** 2))
        if norm > c:
            w[r] = w[r] * (c / norm)
    return w
