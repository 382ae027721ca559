"""CPU kernels: regularization."""
