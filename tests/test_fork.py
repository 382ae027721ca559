"""Kernels in processes forked after the parent used numba's thread pool.

GNU OpenMP kills a forked child that enters a parallel region after the
parent did (and a fork-method ``multiprocessing.Pool`` then hangs), so
fastnn runs the serial twins in such a child.  Each scenario runs in a
fresh interpreter under a timeout, so a regression fails instead of
killing or hanging the test run.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_PRELUDE = """
import multiprocessing, os, sys
import numpy as np
import fastnn._config as config
import fastnn.functional as F

X = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)  # 2**20 >= threshold

def work(seed):
    return float(F.dropout(X, 0.5, seed=seed).sum())

expected = [work(s) for s in range(4)]          # the parent runs the parallel twin
assert config._pool.started, "the parent never went parallel: the test proves nothing"
"""


def _run(body):
    code = textwrap.dedent(_PRELUDE) + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_os_fork_child_runs_a_large_kernel_after_the_parent_went_parallel():
    _run("""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if [work(s) for s in range(4)] == expected else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
        assert config.parallel_allowed()            # the parent keeps its pool
    """)


def test_fork_pool_map_completes_with_the_parents_results():
    _run("""
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map(work, range(4), chunksize=1)
        assert got == expected, (got, expected)
    """)


def test_a_child_forked_after_other_numba_parallel_code_runs_serially():
    # the pool started by the user's own prange code, never by a fastnn kernel
    code = textwrap.dedent("""
        import os
        import numba, numpy as np
        import fastnn._config as config
        import fastnn.functional as F

        @numba.njit(parallel=True)
        def user_kernel(a):
            for i in numba.prange(a.size):
                a[i] += 1.0
        user_kernel(np.zeros(1 << 16))
        assert not config._pool.started
        X = np.ones((1024, 1024), np.float32)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if float(F.dropout(X, 0.5, seed=1).sum()) > 0 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
