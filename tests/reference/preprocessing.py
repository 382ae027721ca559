"""Float64 naive references for fastnn.preprocessing (clarity over speed)."""
import numpy as np


def mean_var(X):
    """Per-column mean and biased variance, two passes in float64."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    mean = X.sum(axis=0) / n
    var = ((X - mean) ** 2).sum(axis=0) / n
    return mean, var


def standardize(X, with_mean=True, with_std=True):
    """(X - mean) / std per column, with std 1 for constant columns."""
    X = np.asarray(X, dtype=np.float64)
    mean, var = mean_var(X)
    std = np.sqrt(var)
    std[var == 0] = 1.0
    out = X.copy()
    if with_mean:
        out = out - mean
    if with_std:
        out = out / std
    return out


def pca(X, n_components=None, whiten=False, eps=1e-5):
    """(components, explained_variance, ratio, mean, transformed X).

    Covariance of the explicitly centered data, eigh, sorted by decreasing
    eigenvalue, each component's largest-magnitude entry made positive.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    mean = X.sum(axis=0) / n
    Xc = X - mean
    cov = Xc.T @ Xc / (n - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval = np.maximum(eigval[order], 0.0)
    comps = eigvec[:, order].T
    k = min(n, d) if n_components is None else n_components
    eigval, comps = eigval[:k], comps[:k]
    for i in range(k):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    Y = Xc @ comps.T
    if whiten:
        Y = Y / np.sqrt(eigval + eps)
    total = np.trace(cov)
    return comps, eigval, eigval / total, mean, Y
