"""Counter-based random numbers: a pure function of (seed, element index).

Element ``i`` of the stream for ``seed`` is the 32-bit word

    key  = mix64(seed + GOLDEN)                      (once per call)
    z    = mix64(key + (i >> 1) * GOLDEN)            (one hash per pair)
    u(i) = low 32 bits of z if i is even, else the high 32 bits

where ``mix64`` is the SplitMix64 finalizer (Stafford's "Mix13"; two 64-bit
multiplies, three xor-shifts) and ``GOLDEN`` the odd 64-bit golden-ratio
constant.  For a fixed key, ``z`` is SplitMix64's output sequence, a
generator known to pass BigCrush; ``key`` is itself a bijective hash of the
seed, so seeds 0, 1, 2, ... start at scattered, distinct points of the 2**64
cycle instead of at neighbouring ones.

Why this shape:

- Any element's number is computable by any thread, on the CPU or the GPU, in
  the forward or the backward pass, so a dropout mask never has to be stored.
- Only uint64 multiply, add, xor and shift: numba CUDA has all of them, so
  the CUDA twin produces bit-identical masks.
- One hash feeds two elements, halving the multiplies; on AVX2 (no native
  64-bit vector multiply) the loop still vectorizes and costs about
  0.7 ns per element per core.

The kernels below take the key, not the seed: :func:`seed_key` computes it
once in Python.
"""
import numpy as np

from fastnn._config import jit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1

# The largest seed accepted: seeds are reduced to 64 bits.
MAX_SEED = _MASK64


def _mix64_py(z):
    """mix64 on Python ints (used once per call to derive the key)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def seed_key(seed):
    """The 64-bit stream key of a non-negative integer seed < 2**64, as np.uint64."""
    return np.uint64(_mix64_py((int(seed) + 0x9E3779B97F4A7C15) & _MASK64))


@jit(inline="always")
def mix64(z):
    """SplitMix64 finalizer: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


@jit(inline="always")
def pair_bits(key, pair):
    """The 64 random bits shared by elements 2*pair (low half) and 2*pair+1 (high half)."""
    return mix64(key + pair * GOLDEN)


@jit(inline="always")
def low_word(z):
    # As int64 so that comparisons against an int64 threshold stay signed
    # (AVX2 has no unsigned 64-bit compare); the value is < 2**32 either way.
    return np.int64(z & _LOW32)


@jit(inline="always")
def high_word(z):
    return np.int64(z >> np.uint64(32))


@jit
def fill_uint32(out, key, start):
    """out[k] = u(start + k) for a 1-D uint32 array; ``start`` must be even."""
    n = out.size
    first = np.uint64(start) >> np.uint64(1)
    for j in range(n // 2):
        z = pair_bits(key, first + np.uint64(j))
        out[2 * j] = low_word(z)
        out[2 * j + 1] = high_word(z)
    if n % 2:
        out[n - 1] = low_word(pair_bits(key, first + np.uint64(n // 2)))


def random_uint32(seed, n, start=0):
    """u(start), ..., u(start + n - 1) of the stream for ``seed`` as a uint32 array.

    For tests and inspection; the kernels inline the generator instead.
    ``start`` must be even (pairs share one hash).
    """
    if start % 2:
        raise ValueError(f"start must be even, got {start}")
    out = np.empty(n, dtype=np.uint32)
    fill_uint32(out, seed_key(seed), np.uint64(start))
    return out
