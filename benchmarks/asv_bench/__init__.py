"""fastnn's benchmarks: an asv suite (``bench_*.py``) and pytest-benchmark
tests (``test_bench_*.py``).

The asv suite tracks fastnn's own kernels over commits; the side-by-side
comparison with numpy and torch is ``fastnn bench``.  Both use the kernel
definitions of :mod:`fastnn.bench._cases`, so they measure the same calls.
"""
