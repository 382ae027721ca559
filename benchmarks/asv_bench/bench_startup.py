"""asv ``timeraw_`` benchmarks: start-up, each sample in a new process.

* ``ColdStart``: a first fit where numba's cache is empty (a fresh
  ``NUMBA_CACHE_DIR``), as on a new machine, container or cluster worker:
  everything the fit needs is compiled inside the timing.
* ``Startup``: import, and import plus the first call of every kernel, with
  numba's on-disk cache warm (after asv's first sample): the "second
  process" start-up.

The snippets are plain strings, so ``benchmarks/compare.py`` runs the very
same code for its before/after cold start.
"""

# The snippet of a cold first fit: ``{fit}`` is one of COLD_FITS.
COLD_START = """
import os, shutil, tempfile
_cache = tempfile.mkdtemp(prefix="fastnn-cold-cache-")
os.environ["NUMBA_CACHE_DIR"] = _cache
try:
    import numpy as np
    rng = np.random.default_rng(0)
    X = rng.standard_normal((569, 30)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
{fit}
finally:
    shutil.rmtree(_cache, ignore_errors=True)
"""
COLD_FITS = {
    # train.fit of a 30-16-2 ReLU net: Adam, cross-entropy, float32, batch 32
    "train_fit": """
    from fastnn import nn, optim, train
    model = nn.Sequential(nn.Linear(30, 16, rng=0), nn.ReLU(), nn.Linear(16, 2, rng=1))
    train.fit(model, X, y, loss="cross_entropy", optimizer=optim.Adam(model.parameters()),
              epochs=2, batch_size=32, rng=0, progress=False)
""",
    # the scikit-learn face with its defaults (max_iter cut: compilation is the point)
    "mlp_classifier": """
    import warnings
    from fastnn.estimators import MLPClassifier
    warnings.simplefilter("ignore")
    MLPClassifier(random_state=0, max_iter=2).fit(X, y)
""",
}


class ColdStart:
    """A first fit in a fresh process with an empty numba cache (seconds)."""
    params = [list(COLD_FITS)]
    param_names = ["fit"]
    timeout = 600
    # One sample of tens of seconds: the compile time dwarfs the noise.
    rounds = 1
    repeat = 1
    number = 1

    def timeraw_first_fit(self, fit):
        return COLD_START.format(fit=COLD_FITS[fit])


class Startup:
    timeout = 600
    repeat = (2, 5, 30.0)

    def timeraw_import(self):
        return "import fastnn.functional, fastnn.preprocessing"

    def timeraw_import_and_first_call_of_every_kernel(self):
        return """
import fastnn.functional, fastnn.preprocessing
from fastnn.bench._cases import first_calls
first_calls()
"""
