"""CPU kernels: dropout."""
