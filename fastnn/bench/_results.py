"""Where benchmark results are kept: one folder per machine class, in the checkout.

Every benchmark that saves JSON (``fastnn bench --json``, ``fastnn bench
--training --json``, ``benchmarks/estimators_vs_sklearn.py --json``,
``benchmarks/gpu_check.py --json``, ``benchmarks/compare.py``) writes, when
given no file name, to::

    benchmarks/results/<machine>/<kind>-<YYYYmmdd-HHMMSS>-<commit>.json

and asv keeps its history in its own format beside them::

    benchmarks/results/asv/benchmarks.json
    benchmarks/results/asv/<machine>/machine.json
    benchmarks/results/asv/<machine>/<commit>-<environment>.json

``<machine>`` is :func:`machine_class`: named from the processor (vendor,
model, micro-architecture where known, widest vector unit, usable cores), so
that a Zen 3 and a Zen 4 machine, or a 2-core and a 16-core one, keep
separate histories, while every machine of one class adds to the same one.
"""
import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _slug(text):
    """Lower-case words joined by '-' (nothing else survives)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpuinfo():
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _amd_uarch(family, model):
    """AMD's micro-architecture from the CPUID family and model, or None."""
    if family == 0x17:
        return "zen2" if model >= 0x30 else "zen1"
    if family == 0x19:
        zen4 = 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF
        return "zen4" if zen4 else "zen3"
    if family == 0x1A:
        return "zen5"
    return None


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_class(cpuinfo=None, cores=None):
    """The name of this machine's class: one benchmark history per class.

    Parameters
    ----------
    cpuinfo : dict, optional
        Fields of one processor as in ``/proc/cpuinfo`` (``vendor_id``,
        ``cpu family``, ``model``, ``model name``, ``flags``); read from the
        system by default.
    cores : int, optional
        Usable cores; this process's CPU affinity by default.

    Returns
    -------
    str
        For example ``amd-epyc-zen3-avx2-2c``: the model name without its
        boilerplate, the micro-architecture where the CPUID family tells it
        (AMD), the widest vector unit (``avx512``, ``avx2``, ``sse``) and the
        number of usable cores.

    Examples
    --------
    >>> machine_class({"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "17",
    ...                "model name": "AMD EPYC 9R14 96-Core Processor",
    ...                "flags": "fpu avx2 avx512f"}, cores=2)
    'amd-epyc-9r14-zen4-avx512-2c'
    """
    info = _cpuinfo() if cpuinfo is None else cpuinfo
    cores = _usable_cores() if cores is None else cores
    name = info.get("model name") or platform.processor() or platform.machine() or "cpu"
    name = re.sub(r"\(r\)|\(tm\)|\bprocessor\b|\bcpu\b|@.*$|\b\d+-core\b", " ", name.lower())
    parts = [_slug(name) or "cpu"]
    if info.get("vendor_id") == "AuthenticAMD":
        try:
            uarch = _amd_uarch(int(info.get("cpu family", "")), int(info.get("model", "")))
        except ValueError:
            uarch = None
        if uarch and uarch not in parts[0]:
            parts.append(uarch)
    flags = set(info.get("flags", "").split())
    if flags:
        parts.append("avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse")
    parts.append(f"{cores}c")
    return "-".join(parts)


def gpu_class(device_name):
    """The machine class of a GPU run: the device's name, e.g. ``nvidia-h100-80gb-hbm3``.

    Examples
    --------
    >>> gpu_class(b"NVIDIA H100 80GB HBM3")
    'nvidia-h100-80gb-hbm3'
    """
    if isinstance(device_name, bytes):
        device_name = device_name.decode()
    return _slug(device_name) or "gpu"


def results_root():
    """``benchmarks/results`` of the checkout fastnn runs from, or None (an installed wheel)."""
    bench = _CHECKOUT / "benchmarks"
    return bench / "results" if bench.is_dir() else None


def commit_id(root=_CHECKOUT):
    """The checkout's short commit hash, ``+dirty`` when tracked files differ from it.

    Falls back to fastnn's version where there is no git checkout.
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        head = git("rev-parse", "--short=8", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        from fastnn import __version__
        return f"v{__version__}"
    return head + ("+dirty" if dirty else "")


def results_path(kind, machine=None, root=None):
    """A new result file's path: ``<root>/<machine>/<kind>-<time>-<commit>.json``.

    Parameters
    ----------
    kind : str
        What was measured: ``kernels``, ``training``, ``estimators``,
        ``gpu_check``, ``compare``.
    machine : str, optional
        The machine class (:func:`machine_class` by default; GPU runs pass
        :func:`gpu_class`).
    root : path-like, optional
        The results folder; by default :func:`results_root`.

    Returns
    -------
    pathlib.Path
        Its folder is created.

    Raises
    ------
    FileNotFoundError
        Without ``root`` when fastnn does not run from a checkout: an
        installed package has no results folder, so pass a file name instead.
    """
    root = results_root() if root is None else Path(root)
    if root is None:
        raise FileNotFoundError("this fastnn is not a checkout, so it has no "
                                "benchmarks/results folder: give a file name")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(root) / (machine or machine_class())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{stamp}-{commit_id()}.json"
