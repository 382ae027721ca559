"""CUDA twin of :mod:`fastnn._cpu.rng`: the SAME source, compiled for the GPU.

The CPU module's hash functions are plain Python functions under ``@jit``;
here their Python source (``py_func``) is compiled again with
``cuda.jit(device=True)``, with the names they call rebound to the device
versions.  There is one definition of the generator, so a seed gives a
bit-identical stream (and dropout mask) on the CPU and on the GPU.
"""
from types import FunctionType

import numpy as np

from fastnn._cpu import rng as _cpu
from fastnn._cuda._common import cuda

seed_key = _cpu.seed_key
MAX_SEED = _cpu.MAX_SEED


def device_twin(cpu_kernel, **rebind):
    """``cpu_kernel``'s Python source compiled as a CUDA device function.

    ``rebind`` replaces globals the source refers to (CPU dispatchers it
    calls) by their device twins.
    """
    f = cpu_kernel.py_func
    g = dict(f.__globals__)
    g.update(rebind)
    twin = FunctionType(f.__code__, g, f.__name__, f.__defaults__, f.__closure__)
    twin.__doc__ = f.__doc__
    return cuda.jit(device=True)(twin)


mix64 = device_twin(_cpu.mix64)
pair_bits = device_twin(_cpu.pair_bits, mix64=mix64)
low_word = device_twin(_cpu.low_word)
high_word = device_twin(_cpu.high_word)


@cuda.jit
def fill_uint32(out, key, start):
    """out[k] = u(start + k) for a 1-D uint32 array; ``start`` must be even."""
    n = out.size
    first = np.uint64(start) >> np.uint64(1)
    for j in range(cuda.grid(1), (n + 1) // 2, cuda.gridsize(1)):
        z = pair_bits(key, first + np.uint64(j))
        out[2 * j] = low_word(z)
        if 2 * j + 1 < n:
            out[2 * j + 1] = high_word(z)
