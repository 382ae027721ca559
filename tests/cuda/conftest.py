"""CUDA tests: run under numba's simulator (NUMBA_ENABLE_CUDASIM=1, CI's CUDA step)
or on a real GPU; otherwise they skip with the reason.

Under the simulator every CUDA thread is a Python thread, so shapes are tiny
and the block is shrunk (fastnn._config.CUDA_THREADS_PER_BLOCK = 8) to force
multi-block launches and partial tails on these small shapes.
"""
import os

import pytest

import fastnn._config as config
from fastnn._cuda import is_available, simulator_enabled

SIMULATED = simulator_enabled()




@pytest.fixture(autouse=True)
def _cuda_or_skip(request, monkeypatch):
    if request.node.get_closest_marker("no_device"):
        return
    if not is_available(allow_simulator=True):
        pytest.skip("no CUDA GPU and the simulator is off (run with NUMBA_ENABLE_CUDASIM=1)")
    if SIMULATED:
        monkeypatch.setattr(config, "CUDA_THREADS_PER_BLOCK",
                            int(os.environ.get("FASTNN_TEST_CUDA_THREADS", "8")))


def pytest_configure(config):
    config.addinivalue_line("markers", "no_device: runs without a CUDA device or simulator")
