"""fastnn's asv suites (``bench_*.py``): kernels, training, start-up.

asv imports every module here, so this folder holds asv suites only.  They
track fastnn over commits (``asv.conf.json``); the side-by-side comparison
with numpy and torch is ``fastnn bench``.  The kernel suite uses the kernel
definitions of :mod:`fastnn.bench._cases`, so both measure the same calls.
"""
