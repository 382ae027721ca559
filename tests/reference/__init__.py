"""Float64 naive reference implementations of every fastnn kernel.

Written for clarity, not speed, and shared by the CPU and the CUDA tests.
One module per topic, mirroring fastnn._cpu.
"""
