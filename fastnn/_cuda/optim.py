"""Device side of :mod:`fastnn.optim`: one fused elementwise kernel per parameter step.

The per-element update rules are :func:`fastnn._cpu.optim.sgd_rule` and
:func:`fastnn._cpu.optim.adam_rule` themselves, compiled here as CUDA device
functions, so the GPU step is the CPU step's math (float64 arithmetic,
rounded to the parameter's dtype on store).  Parameters, gradients and
state buffers are C-contiguous device arrays of one shape (what
``Module.to("cuda")`` and the layer kernels produce); the kernels see them
flat, one grid-stride thread per element.

:mod:`fastnn._cuda.backend` exposes :func:`zeros_like`, :func:`sgd_step`
and :func:`adam_step` as the CUDA backend's optimizer launchers.

Bytes per element: SGD reads w, g (and buf) and writes w (and buf); Adam
reads w, g, m, v and writes w, m, v, which is 7 x itemsize, the minimum
for the rule.
"""
import numpy as np

from fastnn._cpu.optim import adam_rule, sgd_rule
from fastnn._cuda._common import cuda, fill, grid_for, launch, threads_per_block

_sgd_rule = cuda.jit(device=True)(sgd_rule)
_adam_rule = cuda.jit(device=True)(adam_rule)


@cuda.jit
def sgd_kernel(w, g, buf, lr, weight_decay, momentum, nesterov, first):
    """In place, flat: w (and buf, with momentum) updated by :func:`fastnn._cpu.optim.sgd_rule`."""
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        b = np.float64(buf[i]) if momentum != 0.0 and not first else 0.0
        nw, nb = _sgd_rule(np.float64(w[i]), np.float64(g[i]), b, lr, weight_decay, momentum,
                           nesterov, first)
        w[i] = nw
        if momentum != 0.0:
            buf[i] = nb


@cuda.jit
def adam_kernel(w, g, m, v, lr, beta1, beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled):
    """In place, flat: w, m, v updated by :func:`fastnn._cpu.optim.adam_rule`."""
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        nw, nm, nv = _adam_rule(np.float64(w[i]), np.float64(g[i]), np.float64(m[i]),
                                np.float64(v[i]), lr, beta1, beta2, bias1, bias2_sqrt, eps,
                                weight_decay, decoupled)
        w[i] = nw
        m[i] = nm
        v[i] = nv


def _flat(a, name):
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be a C-contiguous device array (updated in place)")
    return a.reshape(a.size) if a.ndim != 1 else a


def _launch(kernel, w, *args):
    if w.size:
        tpb = threads_per_block()
        launch(kernel, grid_for(w.size, tpb), tpb, *args)


def zeros_like(a):
    """A zero-filled device array like ``a`` (the optimizer's state buffers)."""
    out = cuda.device_array(a.shape, dtype=a.dtype)
    _launch(fill, out, out.reshape(out.size), out.dtype.type(0))
    return out


def sgd_step(w, g, buf, lr, weight_decay, momentum, nesterov, first):
    """One SGD step in place on the device: the twin of :func:`fastnn._cpu.backend.sgd_step`.

    Same arguments; ``buf`` is None without momentum.
    """
    wf = _flat(w, "parameter")
    _launch(sgd_kernel, w, wf, _flat(g, "grad"), wf if buf is None else _flat(buf, "state"),
            float(lr), float(weight_decay), float(momentum), bool(nesterov), bool(first))


def adam_step(w, g, m, v, lr, beta1, beta2, bias1, bias2_sqrt, eps, weight_decay, decoupled):
    """One Adam / AdamW step in place: the twin of :func:`fastnn._cpu.backend.adam_step`."""
    _launch(adam_kernel, w, _flat(w, "parameter"), _flat(g, "grad"), _flat(m, "state"),
            _flat(v, "state"), float(lr), float(beta1), float(beta2), float(bias1),
            float(bias2_sqrt), float(eps), float(weight_decay), bool(decoupled))
