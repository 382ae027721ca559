"""CUDA twins of the CPU kernels (``fastnn._cpu``), written with numba-cuda.

Nothing but this module is imported by ``import fastnn``:
:func:`fastnn._backend.backend_of` imports the CUDA backend,
:mod:`fastnn._cuda.backend`, only when a GPU array (anything with
``__cuda_array_interface__``) reaches a public function, so fastnn starts fast
and works without numba-cuda.  One module per topic mirrors
``fastnn/_cpu/<topic>.py`` with the same kernel names; the layers above reach
this package only through :mod:`fastnn._backend`.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the kernels run as
Python, which is how CI tests them without a GPU.  The simulator is never
taken for a real device: :func:`is_available` says False under it unless
``allow_simulator=True``.
"""
import os

__all__ = ["is_available", "simulator_enabled", "require_cuda", "import_cuda", "on_device"]


def simulator_enabled():
    """True when numba's CUDA simulator replaces the driver (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def on_device(x):
    """True for a GPU array: anything with ``__cuda_array_interface__``, or a simulator array.

    Pure Python (imports nothing), so host code can ask cheaply.  numba's
    simulated device arrays have no ``__cuda_array_interface__`` but stand
    for device arrays all the same.
    """
    if hasattr(x, "__cuda_array_interface__"):
        return True
    return type(x).__module__.startswith("numba.cuda.simulator")


def import_cuda(what="a GPU array was given"):
    """numba.cuda, imported; a RuntimeError naming ``what`` and the fix when it does not import.

    Unlike :func:`require_cuda`, it does not check for a usable device:
    importing numba.cuda needs numba-cuda, not a driver (the CUDA modules
    import it this way and compile their kernels on first launch).
    """
    try:
        from numba import cuda
    except ImportError as exc:
        raise RuntimeError(f"{what}, but numba.cuda does not import "
                           f"({exc}); install the CUDA extra: pip install 'fastnn[cuda]'") from exc
    return cuda


def is_available(allow_simulator=False):
    """Whether fastnn can run kernels on a CUDA device.

    Never raises.  Under the simulator the answer is ``allow_simulator``: code
    that picks a device automatically must not send work to a Python
    emulation of a GPU.
    """
    if simulator_enabled():
        return bool(allow_simulator)
    try:
        return bool(import_cuda().is_available())
    except Exception:  # no numba-cuda, no driver, a broken install: all mean "no"
        return False


def require_cuda(what="a GPU array was given"):
    """numba.cuda, or a RuntimeError saying why GPU arrays cannot be processed.

    ``what`` starts the message ("a GPU array was given", "model.to('cuda')
    was called", ...), so the error names what asked for the GPU.
    """
    cuda = import_cuda(what)
    if simulator_enabled():
        return cuda
    try:
        ok = cuda.is_available()
    except Exception as exc:
        raise RuntimeError(f"{what}, but CUDA is not usable: {exc}") from None
    if not ok:
        raise RuntimeError(f"{what}, but no CUDA driver or GPU is usable "
                           "(numba.cuda.is_available() is False); use numpy arrays and the "
                           "CPU instead")
    _check_compiler_imports(what)
    return cuda


def _check_compiler_imports(what):
    """Import now what numba-cuda imports at its first kernel compilation.

    numba-cuda 0.30.4 names ``np.row_stack``, which numpy 2.5 removed: every
    first launch then died deep inside the compiler with "module 'numpy' has
    no attribute 'row_stack'" (seen on the first H200 run).  This says what
    is wrong and how to fix it, once, where the GPU was asked for.
    """
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    except ImportError:
        pass       # a numba-cuda laid out otherwise: nothing to check here
    except AttributeError as exc:
        import numpy
        raise RuntimeError(
            f"{what}, but this numba-cuda cannot compile kernels with numpy "
            f"{numpy.__version__} ({exc}); install a numba-cuda release that supports it, "
            "or numpy<2.5") from exc
