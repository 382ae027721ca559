"""The output cache (fastnn.memory): reuse only what nothing uses any more."""
import gc
import os
import pickle
import signal
import threading
import time

import numba
import numpy as np
import pytest

import fastnn.functional as F
from fastnn import memory

MiB = 1 << 20


@pytest.fixture
def cache(monkeypatch):
    """An empty cache of its own, the library's 1 MiB size floor and a 64 MiB
    limit (buffers lent before the test go back to the suite's cache)."""
    monkeypatch.setattr(memory, "MIN_BYTES", MiB)
    monkeypatch.setattr(memory, "_cache", memory._Cache(limit=64 * MiB))
    return memory


def address(a):
    return a.__array_interface__["data"][0]


def test_dropped_output_is_reused_and_live_one_is_not(cache):
    a = cache.empty((512, 1024), np.float32)
    where = address(a)
    b = cache.empty((512, 1024), np.float32)
    assert address(b) != where
    assert a.flags.c_contiguous and a.flags.writeable and a.shape == (512, 1024)
    del a
    c = cache.empty((1024, 512), np.float32)   # same bytes, other shape
    assert address(c) == where and c.shape == (1024, 512)
    assert cache.cache_info() == {"limit": 64 * MiB, "held": 4 * MiB, "idle": 0}
    del b, c
    assert cache.cache_info()["idle"] == 4 * MiB


@pytest.mark.parametrize("keep", ["view", "transpose", "numba_view", "memoryview", "frombuffer",
                                  "as_strided", "pickle5_buffer", "cycle"])
def test_anything_derived_from_an_output_keeps_its_buffer(cache, keep):
    a = cache.empty((256, 1024), np.float64)
    a[:] = 7.0
    where = address(a)

    @numba.njit
    def tail(x):
        return x[1:]

    class Node:
        pass

    def derived(a):
        def cycle():
            node = Node()
            node.me, node.data = node, a[5]
            return node.data

        return {"view": lambda: a[3:, ::2], "transpose": lambda: a.T[::2],
                "numba_view": lambda: tail(a), "memoryview": lambda: memoryview(a),
                "frombuffer": lambda: np.frombuffer(a, np.float64),
                "as_strided": lambda: np.lib.stride_tricks.as_strided(a, (10,), (8,)),
                "pickle5_buffer": lambda: pickle.PickleBuffer(a).raw(),
                "cycle": cycle}[keep]()

    held = derived(a)
    del a
    gc.collect()
    b = cache.empty((256, 1024), np.float64)
    assert address(b) != where
    b[:] = -1.0
    assert (np.asarray(held).view(np.float64) == 7.0).all()
    del held
    gc.collect()
    assert cache.cache_info()["idle"] == 2 * MiB


def test_outputs_in_a_garbage_cycle_come_back_after_collection(cache):
    class Node:
        pass

    node = Node()
    node.me, node.data = node, cache.empty((MiB,), np.uint8)
    del node
    gc.collect()
    assert cache.cache_info()["idle"] == MiB


@pytest.mark.parametrize("shape, dtype", [((4, 8), np.float32), (0, np.float64), ((), np.float64),
                                          (5 * MiB, object), (MiB, "(2,)f4"), ((0, 4 * MiB), "f4")])
def test_what_bypasses_the_cache_is_plain_numpy(cache, shape, dtype):
    a = cache.empty(shape, dtype)
    b = np.empty(shape, dtype)
    assert (a.shape, a.dtype) == (b.shape, b.dtype) and a.base is None
    assert cache.cache_info()["held"] == 0


def test_limit_evicts_idle_buffers_then_falls_back(cache):
    cache.set_cache_limit(4 * MiB)
    a = cache.empty((MiB,), np.uint8)
    b = cache.empty((2 * MiB,), np.uint8)
    c = cache.empty((3 * MiB,), np.uint8)        # nothing idle to evict: not cached
    assert c.base is None and cache.cache_info()["held"] == 3 * MiB
    del a
    d = cache.empty((2 * MiB,), np.uint8)        # evicts the idle 1 MiB buffer
    assert d.base is not None and address(d) != address(b)
    assert cache.cache_info() == {"limit": 4 * MiB, "held": 4 * MiB, "idle": 0}
    del b, c, d
    assert cache.cache_info()["idle"] == 4 * MiB
    cache.empty_cache()
    assert cache.cache_info() == {"limit": 4 * MiB, "held": 0, "idle": 0}


def test_lowering_the_limit_drops_lent_buffers_when_they_come_back(cache):
    keep = cache.empty((2 * MiB,), np.uint8)
    idle = cache.empty((MiB,), np.uint8)
    del idle
    assert cache.set_cache_limit(0) == 64 * MiB
    assert cache.cache_info() == {"limit": 0, "held": 2 * MiB, "idle": 0}
    assert cache.empty((2 * MiB,), np.uint8).base is None
    del keep
    assert cache.cache_info()["held"] == 0


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                      (True, TypeError)])
def test_bad_limit_is_refused_and_changes_nothing(cache, bad, exc):
    with pytest.raises(exc, match="nbytes"):
        cache.set_cache_limit(bad)
    assert cache.cache_info()["limit"] == 64 * MiB


def test_threads_never_share_a_live_buffer(cache):
    errors = []

    def work(tag):
        for _ in range(200):
            a = cache.empty((MiB // 4,), np.float32)
            a[:] = tag
            if not (a == tag).all():
                errors.append(tag)
            del a

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.cache_info()["held"] <= 4 * MiB


def test_kernels_return_cached_outputs_that_stay_correct(cache):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 512)).astype(np.float32)
    first = F.dropout(x, 0.5, seed=3)
    where, expected = address(first), first.copy()
    first[:] = np.nan
    del first
    again = F.dropout(x, 0.5, seed=3)          # the same buffer, rewritten
    assert address(again) == where
    np.testing.assert_array_equal(again, expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_allocate_while_a_thread_holds_the_lock(cache):
    holding, release = threading.Event(), threading.Event()

    def hold():
        with cache._cache.lock:
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        pid = os.fork()
        if pid == 0:   # the child: the lock must be usable at once
            code = 2
            try:
                code = 0 if cache.empty((MiB,), np.uint8).base is not None else 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child blocked on the cache's lock")
    finally:
        release.set()
        t.join()
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_a_root_buffer_still_held_is_not_recycled(cache):
    y = cache.empty((MiB,), np.uint8)
    root = y.base
    while not isinstance(root, cache._Buffer):       # walk the chain to the cached buffer
        root = root.base
    root_view = root[:16]                             # held through a view of the root too
    root[:16] = 7
    del y, root
    gc.collect()
    z = cache.empty((MiB,), np.uint8)                 # same size: would take the idle buffer
    z[:] = 0
    assert np.all(root_view == 7)
    assert address(z) != address(root_view)
    held = cache.cache_info()["held"]
    del root_view
    gc.collect()
    assert cache.cache_info()["held"] == held          # the dropped buffer is not counted


def test_an_unheld_buffer_is_still_recycled(cache):
    y = cache.empty((MiB,), np.uint8)
    a = address(y)
    del y
    gc.collect()
    assert address(cache.empty((MiB,), np.uint8)) == a
