"""CPU kernels: linear."""
