"""Float64 reference for the fused linear layer, written for clarity.

Unlike the kernels, the backward here differentiates through the
pre-activation ``z`` (recomputed from x, weight, bias), not the saved output,
so it checks the kernels' "derivative from y" formulas independently.
"""
import math

import numpy as np


def _as64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def pre_activation(x, weight, bias=None):
    """z[i, k] = sum_j x[i, j] * weight[k, j] + bias[k], one sample at a time."""
    x, weight, bias = _as64(x), _as64(weight), _as64(bias)
    n, n_out = x.shape[0], weight.shape[0]
    z = np.zeros((n, n_out))
    for i in range(n):
        z[i] = weight @ x[i] + (0.0 if bias is None else bias)
    return z


def _sigmoid(v):
    if v != v:
        return v
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def activate(z, activation=None, negative_slope=0.01):
    """act(z) elementwise (NaN stays NaN)."""
    if activation is None:
        return z.copy()
    if activation == "relu":
        return np.where(z < 0, 0.0, z)
    if activation == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        return np.vectorize(_sigmoid, otypes=[np.float64])(z)
    raise ValueError(activation)


def activation_derivative(z, activation=None, negative_slope=0.01):
    """act'(z) elementwise, with relu'(0) = 0 and leaky_relu'(0) = negative_slope."""
    if activation is None:
        return np.ones_like(z)
    if activation == "relu":
        return (z > 0).astype(np.float64)
    if activation == "leaky_relu":
        return np.where(z > 0, 1.0, negative_slope)
    if activation == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if activation == "sigmoid":
        s = activate(z, "sigmoid")
        return s * (1.0 - s)
    raise ValueError(activation)


def linear(x, weight, bias=None, activation=None, negative_slope=0.01):
    """y = act(x @ weight.T + bias), float64."""
    return activate(pre_activation(x, weight, bias), activation, negative_slope)


def linear_backward(dy, x, weight, bias=None, activation=None, negative_slope=0.01):
    """(dx, dweight, dbias) of sum(dy * linear(x, weight, bias)), float64."""
    dy, x, weight = _as64(dy), _as64(x), _as64(weight)
    z = pre_activation(x, weight, bias)
    dz = dy * activation_derivative(z, activation, negative_slope)
    n, n_in, n_out = x.shape[0], x.shape[1], weight.shape[0]
    dx = np.zeros((n, n_in))
    dweight = np.zeros((n_out, n_in))
    for i in range(n):
        dx[i] = dz[i] @ weight                  # sum_k dz[i, k] * weight[k]
        dweight += np.outer(dz[i], x[i])        # sample i's contribution
    dbias = dz.sum(axis=0)
    return dx, dweight, dbias
