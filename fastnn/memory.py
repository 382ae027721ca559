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
kernel with the same shapes every step reuses the same memory.  Each output
is lent its buffer through a *lease*, an array object between the buffer
and the output: every view of the output, every array numba or numpy derives
from it, every memoryview of it keeps the lease alive, and only when the
last of them is gone does ``weakref.finalize`` give the buffer back to the
cache.  (A distinct type for the buffer stops numpy from collapsing the
chain of ``base`` objects past the lease.)  The cache never holds more than
:func:`set_cache_limit` bytes (default 1 GiB): past it, idle buffers of
other sizes are evicted, and if that is not enough the output is a plain
numpy allocation.  A buffer that code still holds directly when its lease
dies (``y.base.base`` kept past ``y``) leaves the cache rather than being
lent again.  ``set_cache_limit(0)`` turns the cache off.  Outputs from the
cache are ordinary writeable C-contiguous arrays; their ``base`` chain ends
at the cached buffer, so ``owndata`` is False and ``ndarray.resize`` refuses
them.
"""
import math
import operator
import os
import sys
import threading
import weakref

import numpy as np

__all__ = ["empty", "empty_cache", "set_cache_limit", "cache_info"]


#: Outputs smaller than this come from numpy directly: glibc reuses small
#: heap blocks itself, and lending a buffer costs ~3 us.
MIN_BYTES = 1 << 20


class _Buffer(np.ndarray):
    """Memory owned by the cache (uint8, 1-D)."""


class _Lease(np.ndarray):
    """A cached buffer lent to one output and everything derived from it."""


def _refs_when_free():
    """What ``sys.getrefcount`` shows inside ``_Cache.give_back`` for a buffer that
    nobody else holds, measured once through the same path (a lease's
    finalizer calling a bound method): the count is CPython's bookkeeping
    (finalize's arguments, the dying lease's base, the frame), which other
    versions may count differently.  test_memory checks both ways."""
    seen = []

    class _Probe:
        def give_back(self, buf):
            seen.append(sys.getrefcount(buf))
    buf = np.ndarray.__new__(_Buffer, (1,), np.uint8)
    lease = buf.view(_Lease)
    weakref.finalize(lease, _Probe().give_back, buf).atexit = False
    del buf, lease
    return seen[0]


class _Cache:
    """The buffers: idle ones by size, and the bytes of all, idle or lent."""

    def __init__(self, limit):
        # Reentrant: a lease can die (and give its buffer back) in a garbage
        # collection triggered while this thread holds the lock.
        self.lock = threading.RLock()
        self.idle = {}         # nbytes -> list of idle _Buffer
        self.held = 0          # bytes of every buffer owned, idle or lent
        self.limit = limit

    def take(self, nbytes):
        """An idle buffer of exactly ``nbytes``, a new one, or None (cache full)."""
        with self.lock:
            idle = self.idle.get(nbytes)
            if idle:
                return idle.pop()
            if self.held + nbytes > self.limit:
                self.evict(self.held + nbytes - self.limit)
                if self.held + nbytes > self.limit:
                    return None
            self.held += nbytes
            return np.ndarray.__new__(_Buffer, (nbytes,), np.uint8)

    def give_back(self, buf):
        """A lease died: its buffer is idle again (or dropped, if over the limit or still held)."""
        with self.lock:
            # Code that kept the root buffer itself (y.base.base, or a view
            # of it) past the lease holds a reference of its own: recycling
            # the memory would change that array under it, so the buffer
            # leaves the cache instead (numpy frees it with its last user).
            if sys.getrefcount(buf) > _OWN_REFS or self.held > self.limit:
                self.held -= buf.nbytes
            else:
                self.idle.setdefault(buf.nbytes, []).append(buf)

    def evict(self, wanted):
        """Drop idle buffers until ``wanted`` bytes are freed (or none is idle)."""
        with self.lock:
            freed = 0
            for nbytes in list(self.idle):
                bufs = self.idle[nbytes]
                while bufs and freed < wanted:
                    bufs.pop()
                    freed += nbytes
                if not bufs:
                    del self.idle[nbytes]
            self.held -= freed


_OWN_REFS = _refs_when_free()
_cache = _Cache(limit=1 << 30)


def _fresh_lock_after_fork():
    # A child forked while another thread held the lock would wait forever.
    _cache.lock = threading.RLock()


if hasattr(os, "register_at_fork"):      # not on Windows
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def empty(shape, dtype):
    """An uninitialized C-contiguous array, from the cache when it is large.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : numpy dtype or scalar type

    Returns
    -------
    ndarray
        Writeable, C-contiguous, of ``shape`` and ``dtype``.

    Examples
    --------
    >>> from fastnn import memory
    >>> a = memory.empty((1024, 1024), "float32")   # 4 MiB: lent by the cache
    >>> a.shape, a.dtype, a.flags.c_contiguous, a.flags.writeable
    ((1024, 1024), dtype('float32'), True, True)
    """
    dtype = np.dtype(dtype)
    if type(shape) is int:      # the common 1-D call; the except path costs ~1 us
        shape = (shape,)
    try:
        nbytes = math.prod(shape) * dtype.itemsize
    except TypeError:          # an int shape, or one numpy will refuse itself
        return np.empty(shape, dtype)
    if nbytes < MIN_BYTES:     # the usual small call, first: no cache
        return np.empty(shape, dtype)
    cache = _cache
    if not (1 <= nbytes <= cache.limit) or dtype.hasobject or dtype.subdtype:
        return np.empty(shape, dtype)
    buf = cache.take(nbytes)
    if buf is None:
        return np.empty(shape, dtype)
    lease = buf.view(_Lease)
    weakref.finalize(lease, cache.give_back, buf).atexit = False
    return lease.view(np.ndarray).view(dtype).reshape(shape)


def empty_cache():
    """Give every idle cached buffer back to the system (like torch.cuda.empty_cache).

    Buffers that some array still uses stay lent.

    Examples
    --------
    >>> from fastnn import memory
    >>> memory.empty_cache()
    """
    _cache.evict(_cache.held)


def set_cache_limit(nbytes):
    """Set the most bytes the cache may hold (0 turns it off); returns the old limit.

    Lowering the limit evicts idle buffers at once, and lent ones as they
    come back.

    Parameters
    ----------
    nbytes : int
        The new limit in bytes (default 1 GiB); 0 turns the cache off.

    Returns
    -------
    int
        The previous limit.

    Raises
    ------
    TypeError
        ``nbytes`` is not an integer.
    ValueError
        ``nbytes`` is negative.

    Examples
    --------
    >>> from fastnn import memory
    >>> old = memory.set_cache_limit(0)      # off: every output is a fresh allocation
    >>> memory.cache_info()["limit"]
    0
    >>> memory.set_cache_limit(old)
    0
    """
    # checked here rather than by fastnn._validation, which sits above this module
    if isinstance(nbytes, bool) or not hasattr(nbytes, "__index__"):
        raise TypeError(f"nbytes must be an integer, got {nbytes!r}")
    nbytes = operator.index(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    with _cache.lock:
        old, _cache.limit = _cache.limit, nbytes
        if _cache.held > nbytes:
            _cache.evict(_cache.held - nbytes)
    return old


def cache_info():
    """What the cache holds.

    Returns
    -------
    dict
        ``limit`` (bytes it may hold), ``held`` (bytes it holds, idle or
        lent) and ``idle`` (bytes of buffers no array uses).

    Examples
    --------
    >>> from fastnn import memory
    >>> info = memory.cache_info()
    >>> sorted(info), info["idle"] <= info["held"]
    (['held', 'idle', 'limit'], True)
    """
    with _cache.lock:
        idle = sum(nbytes * len(bufs) for nbytes, bufs in _cache.idle.items())
        return {"limit": _cache.limit, "held": _cache.held, "idle": idle}
