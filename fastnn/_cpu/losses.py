"""CPU kernels: losses."""
