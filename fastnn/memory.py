"""Reuse of large output buffers: fastnn's caching allocator for host arrays.

A fresh large numpy array is fresh memory from the operating system: glibc
maps allocations above its (dynamic, at most 32 MiB) threshold anew and gives
freed heap tops back, so every call of a memory-bound kernel that returns a
new 16-128 MiB array first pays the page faults and the zeroing of its
output.  Measured on the project's 2-core machine: a 128 MiB output costs
~12 ms of faults next to an 8 ms dropout pass over the same data, and batch
norm forward + backward at 4096 x 1024 (two 16 MiB outputs) took 7.1 ms
fresh against 3.5 ms into reused buffers.

So fastnn keeps the buffers of its large outputs (>= :data:`MIN_BYTES`) once
the caller has dropped them, as torch does for CUDA memory, and hands them
out again to the next output of the same size: a training loop that calls a
kernel with the same shapes every step reuses the same memory.  A buffer is
idle when no array refers to it any more: every output (and every view of
it) keeps its buffer as its ``base``, so the buffer's reference count says
whether anything still uses it.  The cache never holds more than
:func:`set_cache_limit` bytes (default 1 GiB): past it, idle buffers of
other sizes are evicted, and if that is not enough the output is a plain
numpy allocation.  Outputs from the cache are ordinary writeable
C-contiguous arrays whose ``base`` is the cached buffer.
"""
import math
import sys
import threading

import numpy as np

__all__ = ["empty", "empty_cache", "set_cache_limit", "cache_info"]

#: Outputs smaller than this come from numpy directly: glibc reuses small
#: heap blocks itself, and a memory-bound kernel on 1 MiB takes tens of
#: microseconds, next to which the cache's bookkeeping (~1 us) is noise.
MIN_BYTES = 1 << 20

_lock = threading.Lock()
_buffers = {}      # nbytes -> list of 1-D uint8 arrays
_held = 0          # bytes of every cached buffer, idle or in use
_limit = 1 << 30

# sys.getrefcount of a cached buffer that nothing outside the cache uses,
# seen from the loops below: the list's reference, the loop variable and
# getrefcount's own argument.
_IDLE_REFS = 3


def empty(shape, dtype):
    """An uninitialized C-contiguous array, from the cache when it is large.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype or scalar type

    Returns
    -------
    ndarray
        Writeable, C-contiguous, of ``shape`` and ``dtype``.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or nbytes > _limit:
        return np.empty(shape, dtype)
    with _lock:
        buf = _take(nbytes)
        # Viewed through the buffer, so that the output's base is the buffer
        # itself (numpy collapses the chain of views to the owning array).
        return buf.view(dtype).reshape(shape) if buf is not None else np.empty(shape, dtype)


def _take(nbytes):
    """An idle cached buffer of exactly ``nbytes``, a new one, or None (full)."""
    global _held
    for buf in _buffers.get(nbytes, ()):
        if sys.getrefcount(buf) == _IDLE_REFS:
            return buf
    if _held + nbytes > _limit:
        _evict(_held + nbytes - _limit)
        if _held + nbytes > _limit:
            return None
    buf = np.empty(nbytes, np.uint8)
    _buffers.setdefault(nbytes, []).append(buf)
    _held += nbytes
    return buf


def _evict(wanted):
    """Drop idle buffers until ``wanted`` bytes are freed (or none is idle)."""
    global _held
    freed = 0
    for nbytes, bufs in list(_buffers.items()):
        keep = []
        for buf in bufs:
            if freed < wanted and sys.getrefcount(buf) == _IDLE_REFS:
                freed += nbytes
            else:
                keep.append(buf)
        if keep:
            _buffers[nbytes] = keep
        else:
            del _buffers[nbytes]
    _held -= freed


def empty_cache():
    """Give every idle cached buffer back to the system (like torch.cuda.empty_cache).

    Buffers that some array still uses stay cached.
    """
    with _lock:
        _evict(_held)


def set_cache_limit(nbytes):
    """Set the most bytes the cache may hold (0 turns it off); returns the old limit.

    Lowering the limit evicts idle buffers at once.

    Raises
    ------
    TypeError
        ``nbytes`` is not an integer.
    ValueError
        ``nbytes`` is negative.
    """
    from fastnn._validation import integer  # here: _validation imports this module
    global _limit
    nbytes = integer(nbytes, "nbytes", low=0)
    with _lock:
        old, _limit = _limit, nbytes
        if _held > _limit:
            _evict(_held - _limit)
    return old


def cache_info():
    """Dict with the cache's ``limit``, ``held`` and ``idle`` bytes and ``buffers`` count."""
    with _lock:
        idle = sum(n for n, bufs in _buffers.items() for buf in bufs
                   if sys.getrefcount(buf) == _IDLE_REFS)
        return {"limit": _limit, "held": _held, "idle": idle,
                "buffers": sum(len(b) for b in _buffers.values())}
