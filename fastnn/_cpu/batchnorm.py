"""CPU kernels: batchnorm."""
