#!/usr/bin/env bash
# The whole test suite, as CI runs it: the default run, then the variants the
# correctness bar asks for.  Each variant gets its own numba cache directory:
# numba's cache key ignores NUMBA_BOUNDSCHECK and the thread count, so a shared
# cache would silently reuse kernels compiled without bounds checks.
# Extra arguments are passed to every pytest call.
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-numba-cache.XXXXXX")
trap 'rm -rf "$cache_root"' EXIT
export FASTNN_REQUIRE_TORCH=${FASTNN_REQUIRE_TORCH:-1}
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}

step() { echo; echo "=== $1 ==="; }

# Lint first: it takes a fraction of a second ([tool.ruff] in pyproject.toml).
step "ruff check"
ruff check .

step "default"
NUMBA_CACHE_DIR="$cache_root/default" python -m pytest -p no:cacheprovider "$@"

# The numpydoc Examples of the library, run as doctests (on the default
# variant's numba cache).  fastnn/_cuda is left out: its modules refuse to
# import without a GPU (and hold no Examples: the public functions do).
step "doctests (docstring Examples)"
NUMBA_CACHE_DIR="$cache_root/default" python -m pytest -p no:cacheprovider --doctest-modules \
    --ignore=fastnn/_cuda fastnn "$@"

step "NUMBA_BOUNDSCHECK=1 (kernels only)"
NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR="$cache_root/boundscheck" \
    python -m pytest -p no:cacheprovider -m "not slow" tests "$@"

step "NUMBA_NUM_THREADS=1 (kernels only)"
NUMBA_NUM_THREADS=1 NUMBA_CACHE_DIR="$cache_root/onethread" \
    python -m pytest -p no:cacheprovider -m "not slow" tests "$@"

# asv continuous between the last two commits, each built into asv's pinned
# virtualenv, at the small size: fails when a commit is missing, an
# environment does not build or a benchmark fails; lists slower benchmarks.
step "asv continuous HEAD~1 HEAD (small size)"
bash benchmarks/asv_ci.sh

# CUDA twins without a GPU: the kernels run as Python under numba's simulator
# (set before numba is imported), then every kernel is type-checked and
# lowered for the real CUDA target (no simulator; no GPU needed).
step "CUDA simulator (tests/cuda, gpu_check --simulate) and CUDA lowering"
NUMBA_ENABLE_CUDASIM=1 NUMBA_CACHE_DIR="$cache_root/cudasim" \
    python -m pytest -p no:cacheprovider tests/cuda "$@"
NUMBA_ENABLE_CUDASIM=1 NUMBA_CACHE_DIR="$cache_root/cudasim" python benchmarks/gpu_check.py --simulate \
    --json "$cache_root/gpu_check.json"
FASTNN_TEST_CUDA_LOWERING=1 NUMBA_CACHE_DIR="$cache_root/cudalower" \
    python -m pytest -p no:cacheprovider tests/cuda/test_lowering.py "$@"
