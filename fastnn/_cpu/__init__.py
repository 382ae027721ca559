"""Private numba CPU kernels, one module per topic.

The CUDA twins in ``fastnn._cuda`` use the same function names and argument
order.  Nothing here validates input: ``fastnn.functional`` does that first.
"""
