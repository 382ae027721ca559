"""The ``fastnn`` command (also ``python -m fastnn``).

Subcommands:

* ``fastnn bench``  -- benchmark every kernel against numpy and torch, and the
  machine's own limits (see ``fastnn bench --help``);
* ``fastnn info``   -- what a bug report needs: versions, numba threading
  layer and thread count, the OpenMP environment ``import fastnn`` set (and
  how to opt out), cache directory, BLAS, whether CUDA is usable;
* ``fastnn lesson`` -- the lesson's experiments and figures, or with
  ``--html DIR`` the lesson as one interactive page
  (``fastnn.lesson.main``; ``fastnn lesson --help``).
"""
import argparse
import json
import os
import platform
import sys

USAGE = """\
usage: fastnn {bench,info,lesson} [options]

  bench    benchmark every kernel against numpy and torch, with the machine's
           STREAM bandwidth and BLAS speed (fastnn bench --help)
  info     versions, threading, cache, BLAS and CUDA status for bug reports
  lesson   run the lesson's experiments and write its figures, or with --html DIR
           one interactive page (fastnn lesson --help)
"""

_ENV_VARS = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR", "NUMBA_BOUNDSCHECK",
             "NUMBA_DISABLE_JIT", "NUMBA_ENABLE_CUDASIM", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
             "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_REQUIRE_TORCH")


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect_info():
    """The facts ``fastnn info`` prints, as a dict.  Never raises."""
    out = {"fastnn": None, "python": f"{platform.python_version()} ({sys.executable})",
           "platform": platform.platform()}
    try:
        import fastnn
        out["fastnn"] = f"{fastnn.__version__} ({os.path.dirname(fastnn.__file__)})"
    except Exception as exc:  # a broken install is exactly when info is needed
        out["fastnn"] = f"import failed: {type(exc).__name__}: {exc}"
    # Versions from the package metadata: importing torch here would load a
    # second OpenMP runtime into this process for nothing.
    out["versions"] = {d: _version(d) for d in ("numpy", "numba", "llvmlite", "torch", "scipy",
                                                "scikit-learn", "numba-cuda", "tqdm")}
    from fastnn.bench._runner import cpu_name
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    out["cpu"] = {"model": cpu_name(), "os.cpu_count": os.cpu_count(), "usable": affinity}
    out["numba"] = _numba_info()
    try:
        out["thread_pool_env"] = thread_pool_env()
    except Exception as exc:
        out["thread_pool_env"] = f"unknown ({type(exc).__name__}: {exc})"
    out["blas"] = _blas_info()
    out["cuda"] = _cuda_info()
    out["environment"] = {k: os.environ[k] for k in _ENV_VARS if k in os.environ}
    return out


def thread_pool_env():
    """What ``import fastnn`` set in the environment for OpenMP, and how to opt out.

    Returns
    -------
    dict
        Each of ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` with its value and
        who set it, then ``why`` and ``opt_out`` as sentences.

    Examples
    --------
    >>> env = thread_pool_env()
    >>> sorted(env)
    ['GOMP_SPINCOUNT', 'OMP_WAIT_POLICY', 'opt_out', 'why']
    """
    from fastnn._config import SET_BY_FASTNN, THREAD_ENV
    out = {}
    for name in THREAD_ENV:
        value = os.environ.get(name)
        if name in SET_BY_FASTNN:
            out[name] = f"{value} (set by import fastnn)"
        else:
            out[name] = (f"{value} (yours)" if value is not None else
                         "unset (you set the other one, so fastnn set neither)")
    out["why"] = ("numba's OpenMP workers sleep after a short spin instead of spinning on the "
                  "cores that BLAS and the next kernel need (measured in fastnn/_config.py)")
    out["opt_out"] = ("set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself before importing fastnn "
                      "(e.g. OMP_WAIT_POLICY=ACTIVE): fastnn then sets neither")
    return out


def _numba_info():
    info = {}
    try:
        import numba
        from numba.core import config
        info["num_threads"] = numba.get_num_threads()
        info["threading_layer_requested"] = config.THREADING_LAYER
        try:
            # The layer is chosen when the first parallel region runs: run one
            # (the tiny STREAM copy kernel, cached on disk after the first time).
            import numpy as np

            from fastnn.bench._machine import stream_copy
            stream_copy(np.zeros(64), np.ones(64))
            info["threading_layer"] = numba.threading_layer()
        except Exception as exc:
            info["threading_layer"] = f"unknown ({type(exc).__name__}: {exc})"
        cache = config.CACHE_DIR
        info["cache_dir"] = cache or "(unset: __pycache__ next to each module, e.g. " + \
            os.path.join(os.path.dirname(os.path.dirname(__file__)), "fastnn", "_cpu",
                         "__pycache__") + ")"
        info["boundscheck"] = config.BOUNDSCHECK
        info["disable_jit"] = bool(config.DISABLE_JIT)
        try:
            import llvmlite.binding as ll
            info["host_cpu"] = ll.get_host_cpu_name()
        except Exception:
            pass
        try:
            from fastnn._config import FASTMATH, PARALLEL_THRESHOLD
            info["fastmath"] = sorted(FASTMATH)
            info["parallel_threshold"] = PARALLEL_THRESHOLD
            info["after_fork"] = ("serial twins in a process forked after its parent started "
                                  "the thread pool (GNU OpenMP's pool does not survive fork)")
            info["off_main_thread"] = ("serial twins: kernels called from other threads (Dask's "
                                       "threaded scheduler, distributed workers) use one core "
                                       "each and never enter numba's pool concurrently, "
                                       "whatever the threading layer")
        except Exception:
            pass
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _blas_info():
    try:
        import numpy  # noqa: F401  (loads its BLAS so threadpoolctl sees it)
        from threadpoolctl import threadpool_info
        return [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                       "threading_layer", "architecture", "filepath")}
                for p in threadpool_info()]
    except ImportError:
        pass
    except Exception as exc:
        return f"threadpoolctl failed: {type(exc).__name__}: {exc}"
    try:
        import numpy as np
        cfg = np.show_config(mode="dicts")
        return cfg.get("Build Dependencies", {}).get("blas")
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


def _cuda_info():
    try:
        from numba import cuda
    except Exception as exc:
        return {"usable": False, "why": f"numba.cuda does not import: {type(exc).__name__}: {exc}"}
    from fastnn._backend import is_available, simulator_enabled

    try:
        # fastnn's own test: the simulator stands in for a driver but is no GPU.
        if not is_available():
            why = ("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): kernels would run as "
                   "Python" if simulator_enabled() else "no CUDA driver/GPU")
            return {"usable": False, "why": why, "simulator": simulator_enabled()}
        devs = []
        for d in cuda.list_devices():
            try:
                name = d.name.decode() if isinstance(d.name, bytes) else str(d.name)
                devs.append(f"{d.id}: {name} (cc {'.'.join(map(str, d.compute_capability))})")
            except Exception as exc:
                devs.append(f"?: {exc}")
        return {"usable": True, "devices": devs}
    except Exception as exc:
        return {"usable": False, "why": f"{type(exc).__name__}: {exc}"}


def _print_info(info, indent=""):
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_info(value, indent + "  ")
        elif isinstance(value, list):
            print(f"{indent}{key}:")
            for item in value:
                if isinstance(item, dict):
                    print(f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items()
                                                      if v is not None))
                else:
                    print(f"{indent}  - {item}")
        else:
            print(f"{indent}{key}: {value if value is not None else '-'}")


def info_main(argv):
    p = argparse.ArgumentParser(prog="fastnn info",
                                description="Print what a bug report needs.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        _print_info(info)
    return 0


def lesson_main(argv):
    import importlib
    try:
        lesson = importlib.import_module("fastnn.lesson")
    except ModuleNotFoundError as exc:
        if exc.name in ("fastnn.lesson",):
            print("fastnn lesson: the lesson module (fastnn.lesson) is not available in this "
                  "installation.", file=sys.stderr)
            return 2
        raise
    if not hasattr(lesson, "main"):
        print("fastnn lesson: fastnn.lesson has no main(argv) entry point yet.", file=sys.stderr)
        return 2
    rc = lesson.main(list(argv))
    return 0 if rc is None else rc


def main(argv=None):
    """``fastnn`` entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        from fastnn.bench import main as bench_main
        return bench_main(rest)
    if cmd == "info":
        return info_main(rest)
    if cmd == "lesson":
        return lesson_main(rest)
    if cmd in ("--version", "-V"):
        import fastnn
        print(f"fastnn {fastnn.__version__}")
        return 0
    print(f"fastnn: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
