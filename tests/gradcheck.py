"""Finite-difference gradient checks (float64, central differences)."""
import numpy as np


def numerical_vjp(f, x, dy, eps=1e-6):
    """d/dx of sum(f(x) * dy), by central differences, one element at a time.

    ``f`` maps an array shaped like ``x`` to an array shaped like ``dy`` (or a
    scalar, with ``dy`` a scalar weight).  ``x`` is not modified.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = np.sum(np.asarray(f(x)) * dy)
        flat[i] = old - eps
        minus = np.sum(np.asarray(f(x)) * dy)
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


def assert_grad_close(analytic, numeric, rtol=1e-4, atol=1e-6):
    """Compare an analytic gradient with a numerical one (relative to its size)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(numeric)))) if numeric.size else 1.0
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol * scale)
