"""A benchmark worker process: ``python -m fastnn.bench._worker GROUP``.

The parent (``fastnn.bench._runner``) starts one worker per group
(``stream``, ``sgemm``, ``fastnn``, ``numpy``, ``torch``, ``sklearn``) and
sends it one JSON request per line on stdin; the worker answers each with
one line ``@@fastnn-bench@@ {json}`` on stdout (any other output of a
library goes to stderr, never into the protocol).  Only the group's own
library does work in a worker, so OpenBLAS, torch's OpenMP pool and numba's
pool never share a process; a worker waiting for its next request is blocked
on stdin, and its thread pools go to sleep.

Requests: ``{"op": "case", "kernel", "n", "d", "dtype", "impls", "timing"}``,
``{"op": "stream", ...}``, ``{"op": "sgemm", ...}``, ``{"op": "info"}``,
``{"op": "exit"}``.
"""
import json
import os
import platform
import sys
import traceback

import numpy as np

from fastnn._config import SET_BY_FASTNN, THREAD_ENV

from ._runner import NUMBA_GROUPS, TAG


def _reply(obj, out):
    out.write(TAG + json.dumps(obj) + "\n")
    out.flush()


def _info(group):
    info = {"group": group, "pid": os.getpid(), "python": platform.python_version(),
            "thread_env": {name: os.environ.get(name) for name in THREAD_ENV}}
    if group in NUMBA_GROUPS:
        import numba
        info["numba_threads"] = numba.get_num_threads()
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            info["threading_layer"] = None
    if group == "torch":
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["torch"] = torch.__version__
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                               for p in threadpool_info()]
    except Exception:
        pass
    return info


def _case(req):
    from ._cases import KERNELS_BY_NAME
    from ._timing import measure
    kernel = KERNELS_BY_NAME[req["kernel"]]
    dtype = np.dtype(req["dtype"]).type
    data = kernel.setup(req["n"], req["d"], dtype)
    timing = req.get("timing", {})
    out = {}
    for impl in req["impls"]:
        try:
            run, _ = kernel.build(impl, data)
            out[impl] = measure(run, **timing)
        except Exception as exc:
            out[impl] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
    res = {"times": out}
    if req.get("paired_stream"):
        from ._machine import paired_stream
        impl = "fastnn_out" if "fastnn_out" in req["impls"] else req["impls"][0]
        try:
            run, _ = kernel.build(impl, data)
            res["paired_stream"] = dict(paired_stream(run, **req["paired_stream"]), impl=impl)
        except Exception as exc:
            res["paired_stream"] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    group = argv[0]
    # The protocol owns the real stdout; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    if group not in NUMBA_GROUPS:
        # Importing this module imported fastnn, which set its thread-pool
        # defaults; a competitor runs with its own (see _runner._environment).
        for name in SET_BY_FASTNN:
            os.environ.pop(name, None)
    try:
        if group == "torch":
            import torch  # noqa: F401  (fail here, with a clear reply)
        elif group == "sklearn":
            import sklearn  # noqa: F401
        _reply({"ok": True, "info": _info(group)}, proto)
    except Exception as exc:
        _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, proto)
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        try:
            if op == "exit":
                break
            elif op == "info":
                res = {"info": _info(group)}
            elif op == "case":
                res = _case(req)
            elif op == "stream":
                from ._machine import measure_stream
                res = {"stream": measure_stream(**req.get("args", {}))}
            elif op == "sgemm":
                from ._machine import measure_sgemm
                res = {"sgemm": measure_sgemm(**req.get("args", {}))}
            else:
                res = {"error": f"unknown op {op!r}"}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            res = {"error": f"{type(exc).__name__}: {exc}"}
        _reply(res, proto)
    return 0


if __name__ == "__main__":
    sys.exit(main())
