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
block_key = device_twin(_cpu.block_key, mix64=mix64)
hash32 = device_twin(_cpu.hash32)
uniform32 = device_twin(_cpu.uniform32, hash32=hash32)


@cuda.jit(device=True)
def uniform(key, i, cached_block, a, b):
    """u(i), with the block keys (a, b) of ``cached_block`` recomputed only when i leaves it.

    Returns ``(u, block, a, b)``: a grid-stride loop threads the cache through
    its iterations, so the 64-bit block hash runs once per thread, not once
    per element.
    """
    block = i >> 32
    if block != cached_block:
        a, b = block_key(key, block)
    return uniform32(np.uint32(i & 0xFFFFFFFF), a, b), block, a, b


@cuda.jit
def fill_uint32(out, key, start):
    """out[k] = u(start + k) for a 1-D uint32 array."""
    block, a, b = -1, np.uint32(0), np.uint32(0)
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[k], block, a, b = uniform(key, start + k, block, a, b)
