"""fastnn.dask past memory: scaler / PCA fits, transform, predict on a lazily generated array.

Not an asv benchmark (asv imports this module and finds nothing to run); a
script, run once:

    python benchmarks/dask_scale.py --rows 134217728            # 2**27 x 64 float32 = 32 GiB
    python benchmarks/dask_scale.py --rows 1048576 --compare-rows 1048576 --predict-rows 1000000

The data never exist as a whole: every block is generated inside its task by
a counter-based hash of (row, column) (any block, any worker, same numbers),
so the array can be far larger than memory.  Each measurement reports
seconds, GB/s of float32 input, and the peak resident memory of this process
and all its children (the LocalCluster's workers included), sampled every
50 ms.  Competitors (dask-ml when it imports, dask.array's own reductions
and tall-skinny SVD) run at ``--compare-rows``, next to fastnn at the same
size; results are checked against float64 references computed in chunks.
"""
import argparse
import json
import os
import sys
import threading
import time

import numpy as np

D = 64
SEED = 12345


def _make_generator():
    from numba import njit

    @njit(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz", "arcp"})
    def fill(out, row0, col_keys, scale, offset):
        # lowbias32 (C. Wellons) of (row * golden ^ column key): 32-bit
        # multiplies, so the loop vectorizes with AVX2.  Column j mixes in
        # 30% of column j-1's uniform, so the columns are correlated.
        n, d = out.shape
        for i in range(n):
            r = np.uint32((row0 + i) & 0xFFFFFFFF) * np.uint32(0x9E3779B9)
            prev = np.float32(0.0)
            for j in range(d):
                h = r ^ col_keys[j]
                h ^= h >> np.uint32(16)
                h *= np.uint32(0x7FEB352D)
                h ^= h >> np.uint32(15)
                h *= np.uint32(0x846CA68B)
                h ^= h >> np.uint32(16)
                u = np.float32(h >> np.uint32(8)) * np.float32(1.0 / 16777216.0) - np.float32(0.5)
                out[i, j] = (u + np.float32(0.3) * prev) * scale[j] + offset[j]
                prev = u
    return fill


_FILL = None
_KEYS = (np.arange(D, dtype=np.uint32) * np.uint32(0x85EBCA6B) + np.uint32(SEED)) ^ np.uint32(0xC2B2AE35)
_SCALE = np.linspace(0.5, 4.0, D).astype(np.float32)
_OFFSET = np.linspace(-100.0, 100.0, D).astype(np.float32)


def block(rows, row0):
    """Rows row0 .. row0 + rows of the virtual array (float32, D columns)."""
    global _FILL
    if _FILL is None:
        _FILL = _make_generator()
    out = np.empty((rows, D), np.float32)
    _FILL(out, row0, _KEYS, _SCALE, _OFFSET)
    return out


def lazy_array(n_rows, chunk_rows):
    import dask.array as da
    chunks = (tuple(min(chunk_rows, n_rows - r) for r in range(0, n_rows, chunk_rows)), (D,))
    starts = np.cumsum((0,) + chunks[0][:-1])

    def gen(block_id=None):
        i = block_id[0]
        return block(chunks[0][i], int(starts[i]))
    return da.map_blocks(gen, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


class PeakRSS:
    """Peak resident memory of this process and its children while the block runs."""

    def __enter__(self):
        import psutil
        self._me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self):
        import psutil
        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a child may exit between listing and reading
                continue
        return total

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


RESULTS = []
WARMUP = False   # when True, measure() runs fn and records nothing (first calls, compiles)


def measure(name, n_rows, fn, width=D):
    """Run fn() once under the peak-memory sampler; record and print the row."""
    if WARMUP:
        return fn()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
    row = {"case": name, "rows": n_rows, "seconds": round(seconds, 2),
           "GB/s": round(n_rows * width * 4 / seconds / 1e9, 3),
           "rows/s": round(n_rows / seconds), "peak_rss_GiB": round(mem.peak / 2**30, 2)}
    RESULTS.append(row)
    print(json.dumps(row), flush=True)
    return value


def reference_stats(n_rows, chunk_rows, k):
    """Float64 mean, variance and top-k covariance eigenvalues, chunk by chunk in numpy."""
    from fastnn.preprocessing import merge_scatter
    n, mean, scatter = 0.0, np.zeros(D), np.zeros((D, D))
    for r0 in range(0, n_rows, chunk_rows):
        x = block(min(chunk_rows, n_rows - r0), r0).astype(np.float64)
        m = x.mean(axis=0)
        xc = x - m
        n, mean, scatter = merge_scatter(n, mean, scatter, float(len(x)), m, xc.T @ xc)
    var = np.diag(scatter) / n
    ev = np.linalg.eigvalsh(scatter / (n - 1))[::-1][:k]
    return mean, var, ev


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b) / np.abs(b)))


def fastnn_cases(n_rows, chunk_rows, tag):
    import dask.array as da

    import fastnn.dask as fd
    X = lazy_array(n_rows, chunk_rows)
    measure(f"generate only (sum of blocks) {tag}", n_rows,
            lambda: X.map_blocks(lambda b: b[:1, :1].copy(),
                                 chunks=((1,) * X.numblocks[0], (1,))).sum().compute())
    sc = measure(f"fastnn StandardScaler fit {tag}", n_rows, lambda: fd.StandardScaler().fit(X))
    measure(f"fastnn transform + column sums {tag}", n_rows,
            lambda: sc.transform(X).sum(axis=0).compute())
    pca = measure(f"fastnn PCA(whiten, 16) fit {tag}", n_rows,
                  lambda: fd.PCA(n_components=16, whiten=True).fit(X))
    del da
    return sc, pca


def competitor_cases(n_rows, chunk_rows):
    import dask
    import dask.array as da
    X = lazy_array(n_rows, chunk_rows)
    out = {}
    try:
        from dask_ml.decomposition import IncrementalPCA
        from dask_ml.preprocessing import StandardScaler as MLScaler
    except ImportError as exc:
        print(f"dask-ml does not import ({exc}); dask.array baselines only", flush=True)
    else:
        ml = measure("dask-ml StandardScaler fit", n_rows, lambda: MLScaler().fit(X))
        out["dask-ml scaler"] = (ml.mean_, ml.var_)
        measure("dask-ml transform + column sums", n_rows,
                lambda: ml.transform(X).sum(axis=0).compute())
        ipca = measure("dask-ml IncrementalPCA(16, whiten) fit", n_rows,
                       lambda: IncrementalPCA(n_components=16, whiten=True,
                                              batch_size=chunk_rows).fit(X))
        out["dask-ml pca"] = ipca.explained_variance_
    mv = measure("dask.array mean + var", n_rows,
                 lambda: dask.compute(X.mean(axis=0, dtype=np.float64),
                                      X.var(axis=0, dtype=np.float64)))
    out["dask mean/var"] = mv

    def svd():
        mean = X.mean(axis=0, dtype=np.float64).compute()
        _, s, _ = da.linalg.svd(X - mean.astype(np.float32))
        return (s.compute()[:16] ** 2) / (n_rows - 1)
    out["dask svd"] = measure("dask.array center + tsqr svd", n_rows, svd)
    return out


def predict_cases(n_rows, chunk_rows, default_threads_loop=True):
    """The digits MLP over n_rows generated rows: dask vs an in-memory loop over the same chunks."""
    from sklearn.datasets import load_digits
    from threadpoolctl import threadpool_limits

    import fastnn.dask as fd
    from fastnn import nn, train
    Xd, yd = load_digits(return_X_y=True)
    model = nn.Sequential(nn.Linear(64, 128, rng=0), nn.ReLU(), nn.Linear(128, 10, rng=1))
    train.fit(model, (Xd / 16).astype(np.float32), yd, epochs=3, batch_size=64, rng=0,
              progress=False)
    X = lazy_array(n_rows, chunk_rows)

    def in_memory_loop():
        total = np.zeros(10)
        for r0 in range(0, n_rows, chunk_rows):
            total += train.predict(model, block(min(chunk_rows, n_rows - r0), r0)).sum(axis=0)
        return total
    if default_threads_loop:
        measure("predict, in-memory loop over the chunks (default threads)", n_rows,
                in_memory_loop)
    with threadpool_limits(1, "blas"):
        a = measure("predict, in-memory loop over the chunks (BLAS 1 thread)", n_rows,
                    in_memory_loop)
    with threadpool_limits(1, "blas"):
        b = measure("predict, fastnn.dask (threads)", n_rows,
                    lambda: fd.predict(model, X).sum(axis=0).compute())
    print("predict sums agree:", bool(np.allclose(a, b, rtol=1e-4)), flush=True)


def cluster_cases(n_rows, chunk_rows):
    from distributed import Client, LocalCluster

    import fastnn.dask as fd
    X = lazy_array(n_rows, chunk_rows)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        fd.StandardScaler().fit(lazy_array(4 * chunk_rows, chunk_rows))   # workers' first calls
        measure("fastnn StandardScaler fit, LocalCluster 2 processes", n_rows,
                lambda: fd.StandardScaler().fit(X))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2**27, help="rows of the big array (x 64 float32)")
    ap.add_argument("--chunk-rows", type=int, default=2**18)
    ap.add_argument("--compare-rows", type=int, default=2**24,
                    help="rows for fastnn vs dask-ml / dask.array (0: skip)")
    ap.add_argument("--predict-rows", type=int, default=10**8, help="0: skip")
    ap.add_argument("--cluster-rows", type=int, default=2**25, help="0: skip")
    ap.add_argument("--skip-big", action="store_true", help="only the comparison cases")
    ap.add_argument("--no-default-threads-loop", action="store_true",
                    help="skip the in-memory predict loop with the default thread pools "
                         "(10x slower than with one BLAS thread on a loaded 2-core machine)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)

    import dask
    from threadpoolctl import threadpool_limits
    # Dask's threaded scheduler already runs one task per core: the BLAS of each task
    # (PCA's scatter products, the MLP's matrix products) gets one thread, as
    # distributed's workers do by default.  The in-memory predict loop keeps all.
    dask.config.set(scheduler="threads", num_workers=os.cpu_count())
    print(f"{os.cpu_count()} cores; rows={args.rows} chunk_rows={args.chunk_rows}", flush=True)
    global WARMUP
    block(8, 0)  # compile the generator before any timing
    # Every case once at a tiny size, unrecorded: imports, numba compiles and
    # dask's first graph build are not what the table is about.
    WARMUP = True
    with threadpool_limits(1, "blas"):
        fastnn_cases(8 * 4096, 4096, "")
        if args.compare_rows:
            competitor_cases(8 * 4096, 4096)
    if args.predict_rows:
        predict_cases(8 * 4096, 4096)
    WARMUP = False
    if args.compare_rows:
        with threadpool_limits(1, "blas"):
            sc, pca = fastnn_cases(args.compare_rows, args.chunk_rows, f"{args.compare_rows} rows")
            comp = competitor_cases(args.compare_rows, args.chunk_rows)
        mean, var, ev = reference_stats(args.compare_rows, args.chunk_rows, 16)
        checks = {"fastnn mean": rel(sc.mean_, mean), "fastnn var": rel(sc.var_, var),
                  "fastnn pca ev": rel(pca.explained_variance_, ev),
                  "dask mean": rel(comp["dask mean/var"][0], mean),
                  "dask var": rel(comp["dask mean/var"][1], var),
                  "dask svd ev": rel(comp["dask svd"], ev)}
        if "dask-ml scaler" in comp:
            checks.update({"dask-ml mean": rel(comp["dask-ml scaler"][0], mean),
                           "dask-ml var": rel(comp["dask-ml scaler"][1], var),
                           "dask-ml pca ev": rel(comp["dask-ml pca"], ev)})
        print("max relative error vs float64 reference:", json.dumps(checks), flush=True)
    if not args.skip_big:
        with threadpool_limits(1, "blas"):
            sc, pca = fastnn_cases(args.rows, args.chunk_rows, f"{args.rows} rows")
        mean, var, ev = reference_stats(args.rows, args.chunk_rows, 16)
        print("vs float64 reference, big size:", json.dumps({
            "mean": rel(sc.mean_, mean), "var": rel(sc.var_, var),
            "pca ev": rel(pca.explained_variance_, ev)}), flush=True)
    if args.cluster_rows:
        with threadpool_limits(1, "blas"):
            measure("fastnn StandardScaler fit, threaded scheduler", args.cluster_rows,
                    lambda: __import__("fastnn.dask").dask.StandardScaler().fit(
                        lazy_array(args.cluster_rows, args.chunk_rows)))
        cluster_cases(args.cluster_rows, args.chunk_rows)
    if args.predict_rows:
        predict_cases(args.predict_rows, min(args.chunk_rows, 2**20),
                      not args.no_default_threads_loop)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
