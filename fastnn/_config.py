"""The one numba decorator policy every fastnn kernel follows.

Every ``@njit`` kernel in ``fastnn._cpu`` is built through :func:`jit` or
:func:`dual_jit`, so the fastmath flags, caching and the serial/parallel
switch are decided here and nowhere else.
"""
import os
import threading
from types import FunctionType

# Threading policy: numba's OpenMP workers sleep as soon as a parallel region
# ends instead of spinning.  A spinning worker holds one of the two cores while
# the BLAS (OpenBLAS pthreads) or the next kernel needs it.  Measured with the
# fused-linear kernels (4096 x 1024 / 256 x 1024 float32, 2 cores, machine
# under load, medians of 3 interleaved runs): a numba parallel region right
# after sgemm took 35 ms / 33 ms by default and 7.4 ms / 0.16 ms with
# PASSIVE; whole linear forward+backward steps at 256 x 1024 x 1024: 443 ms
# default, 325 ms PASSIVE (BLAS-after-numba alone was within the noise).
# The price is a futex wake-up per parallel region, which on these VMs costs
# ~200 us (an MSE over 128K float32 elements, back to back: 240-420 us per
# call, of which ~30 us is the work).  So the workers first spin briefly:
# GOMP_SPINCOUNT=3000 (libgomp counts ~100 spins per us: tens of us) catches
# the next region of the same kernel and the next kernel call, but is over
# long before a BLAS call could notice.  Measured, 4 interleaved rounds of
# separate processes: batch norm forward+backward 4096 x 1024 (4 parallel
# regions) median 5.1 ms without the spin, 3.9 ms with 3000 (3.6 with
# 10000); a step of two 4096 x 1024 x 1024 sgemms + batch norm + dropout,
# 141-155 ms either way; a 256^3 sgemm right after a parallel kernel,
# 200-260 us either way at 1000-3000 spins, ~15% slower at 10000.
# libgomp reads both variables when it is loaded (numba loads it with its
# OpenMP pool, at the first parallel kernel), so they are set at import.
# Only when the user set neither: an explicit GOMP_SPINCOUNT overrides the
# spin that a user's OMP_WAIT_POLICY implies.
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}
# What this import set (fastnn bench removes it again in its competitors'
# workers, so that torch's OpenMP pool runs with torch's defaults).
SET_BY_FASTNN = () if any(name in os.environ for name in THREAD_ENV) else tuple(THREAD_ENV)
os.environ.update({name: THREAD_ENV[name] for name in SET_BY_FASTNN})

from numba import get_num_threads, njit  # noqa: E402

# Reassociation and contraction let LLVM vectorize reductions and fuse
# multiply-adds.  The flags that assume "no NaN / no inf" (nnan, ninf, and
# therefore fastmath=True) are deliberately absent: they make ``isnan`` lie and
# turn ReLU(NaN) into 0.  ``afn`` (approximate functions) is absent too, so
# sqrt/exp/log keep full precision.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# The narrowed set, for code whose accuracy depends on evaluation order or
# cancellation, or that divides by a possibly tiny value: ``reassoc`` lets
# LLVM rewrite ``(x - m) - log_s`` as ``x - (m + log_s)`` (a log-softmax of
# [1e16, 1e16] gave [0, 0]) and ``max(x, 0) - x t + log1p(e)`` so that the
# tiny last term is lost (BCE of x = 50, t = 1 gave 0 instead of 1.9e-22);
# ``arcp`` turns ``w / total`` into ``w * (1 / total)``, which is inf for a
# subnormal total.  ``contract`` (fused multiply-adds) only removes roundings.
# The flags are per instruction: a kernel built with these and inlined into a
# FASTMATH one keeps them, so only the sensitive function needs narrowing.
EXACT_FASTMATH = frozenset({"contract"})

# Below this many elements a kernel runs its serial twin.  A call that finds
# the pool asleep (after a BLAS call, or any pause longer than the spin
# above) pays the wake-up, 60-200 us on these machines (measured, float32,
# 2 threads, without the spin:
# MSE 1M elements 185 us serial vs 318 us parallel; dropout 256K 119 vs 161;
# at 4M elements every kernel is 1.4-1.7x faster in parallel).  2**19 is a
# compromise between the measured crossovers: ~2**17 for softmax-CE, ~2**19
# for dropout, above 2**20 for MSE.  The tests lower it to 2**15 so that their
# shapes reach the parallel twins.
PARALLEL_THRESHOLD = 1 << 19

# Threads per block for the CUDA twins (fastnn._cuda).
CUDA_THREADS_PER_BLOCK = 256


def jit(fn=None, *, parallel=False, fastmath=FASTMATH, **options):
    """Compile ``fn`` with the package policy (usable bare or with options).

    ``error_model="numpy"`` makes float division by zero give inf/NaN (as in
    numpy) instead of raising, which also lets LLVM vectorize divisions.
    ``fastmath`` may be narrowed (never widened to the no-NaN/no-inf flags)
    for code whose accuracy depends on evaluation order or that divides by
    a possibly tiny value: pass :data:`EXACT_FASTMATH` there.
    """
    flags = set(fastmath)
    if flags - FASTMATH:
        raise ValueError(f"fastmath flags {sorted(flags - FASTMATH)} are outside the package "
                         "policy")

    def wrap(f):
        return njit(fastmath=flags, cache=True, nogil=True,
                    error_model="numpy", parallel=parallel, **options)(f)
    return wrap if fn is None else wrap(fn)


class DualKernel:
    """A kernel compiled twice: a serial twin and a ``prange``-parallel twin.

    ``prange`` is plain ``range`` in the serial twin, so one source serves
    both.  Call ``kernel.pick(n_elements)`` to get the twin for a problem
    size (``kernel.pick_chunks(n_elements)`` for a chunked reduction), or
    use ``.serial`` / ``.parallel`` directly.
    """

    def __init__(self, fn, **options):
        # numba's on-disk cache is keyed by the function's qualified name, not
        # by its compile flags: compiling the same function object twice
        # would make the two twins overwrite each other's cache entries.  A
        # renamed copy of the function gets its own cache file.
        serial_fn = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                 fn.__defaults__, fn.__closure__)
        serial_fn.__qualname__ = fn.__qualname__ + "_serial"
        serial_fn.__doc__ = fn.__doc__
        self.serial = jit(serial_fn, parallel=False, **options)
        self.parallel = jit(fn, parallel=True, **options)
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def pick(self, n_elements):
        """The twin to run for a problem of ``n_elements`` elements.

        The serial twin below :data:`PARALLEL_THRESHOLD`, on any thread
        but the process's main thread (see :class:`_PoolState`), and always
        in a process forked after this one's thread pool started (see
        :func:`parallel_allowed`).  The thread test runs only above the
        threshold, so small calls pay nothing for it.
        """
        if n_elements >= PARALLEL_THRESHOLD and _pool.usable and (
                get_ident() == _pool.owner or _pool.any_thread):
            _pool.started = True
            return self.parallel
        return self.serial

    def pick_chunks(self, n_elements, per_thread=1):
        """(twin, n_chunks) for a problem of ``n_elements`` elements.

        ``n_chunks`` is the row-chunk count to pass to the kernel: 1 for the
        serial twin, ``per_thread`` chunks per numba thread for the parallel
        one (more than one lets a fast thread take over the work of a slow,
        shared core).  The thread count is read here, in Python:
        numba.get_num_threads() inside a parallel kernel defeats cache=True.
        """
        kernel = self.pick(n_elements)
        return kernel, (per_thread * get_num_threads() if kernel is self.parallel else 1)


class _PoolState:
    """Whether this process started numba's thread pool, and may use it.

    GNU OpenMP's pool does not survive ``fork()``: a child that enters a
    parallel region after its parent started the pool is killed ("fork()
    called from a process already using GNU OpenMP"), and a
    ``multiprocessing.Pool`` of such children hangs.  fastnn does not rely
    on the other layers in a child either (their threads are gone too).  So
    a child forked after the parent's pool started -- by a fastnn kernel or
    by any other numba parallel code of the process -- runs every kernel's
    serial twin: slower, never killed.  A child forked before the
    parent went parallel keeps the parallel twins, and so does a child made
    with the ``spawn`` or ``forkserver`` start methods (a fresh process).

    Only the main thread (``owner``) runs parallel twins; a kernel called
    from any other thread runs its serial twin, the policy for Dask and any
    other thread pool.  Three reasons.  (1) Safety: numba's ``workqueue``
    threading layer (the fallback where neither TBB nor OpenMP loads) aborts
    the process when parallel regions are entered from several threads at
    once (numba issues 8563, 9288); with this rule fastnn never enters two
    at once, whatever layer numba picked, so the layer is left to numba (and
    to ``NUMBA_THREADING_LAYER``).  (2) No oversubscription: a pool of
    worker threads already supplies the parallelism (Dask's threaded
    scheduler and its distributed workers default to one thread per core),
    and a parallel region entered from each would put
    ``threads x NUMBA_NUM_THREADS`` threads on the cores (with OpenMP, each
    calling thread gets a team of its own; ``numba.set_num_threads`` is
    per thread).  One thread per calling thread is at most its share.
    (3) The same results up to rounding: the serial twins compute what the
    parallel ones do, summing in one chunk where the parallel twins merge
    per-thread chunks (so sums may differ in the last bits).
    :func:`set_parallel_threads` ("any") lets every thread use the pool: for
    an application that runs fastnn from one background thread.
    """
    started = False
    usable = True
    any_thread = False
    # threading.get_ident() of the thread allowed to go parallel: the
    # interpreter's main thread.
    owner = threading.main_thread().ident


_pool = _PoolState()
get_ident = threading.get_ident


def _numba_pool_started():
    """Whether numba's thread pool was started in this process, by anyone.

    Reads numba's own flag (private: if it is gone, assume started, the
    safe answer in a forked child).
    """
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return True
    return bool(getattr(parallel, "_is_initialized", True))


def _after_fork_in_child():
    if _pool.started or _numba_pool_started():
        _pool.usable = False
    # The forking thread is the child's only (and so main) thread.
    _pool.owner = get_ident()


if hasattr(os, "register_at_fork"):      # absent on Windows, which has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_allowed():
    """Whether a large kernel called from this thread may run its parallel twin.

    False on any thread but the main thread (unless
    ``set_parallel_threads("any")``), and in a process forked after its
    parent started the thread pool.
    """
    return _pool.usable and (get_ident() == _pool.owner or _pool.any_thread)


def set_parallel_threads(policy):
    """Which threads may run the kernels' parallel twins: ``"main"`` or ``"any"``.

    ``"main"`` (the default): only the main thread; kernels called from any
    other thread run serially, one core each (what a pool of worker threads,
    such as Dask's, needs).  ``"any"``: every thread, for an application
    that calls fastnn from one background thread; do not call kernels from
    several threads at once then (numba's ``workqueue`` layer aborts on that,
    and OpenMP would run a team per calling thread).

    Returns
    -------
    str
        The previous policy.

    Examples
    --------
    >>> import fastnn
    >>> previous = fastnn.set_parallel_threads("any")
    >>> fastnn.set_parallel_threads(previous)
    'any'
    """
    if policy not in ("main", "any"):
        raise ValueError(f"policy must be 'main' or 'any', got {policy!r}")
    previous = "any" if _pool.any_thread else "main"
    _pool.any_thread = policy == "any"
    return previous


def dual_jit(fn=None, **options):
    """Decorator form of :class:`DualKernel`."""
    def wrap(f):
        return DualKernel(f, **options)
    return wrap if fn is None else wrap(fn)
