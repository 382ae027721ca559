"""CPU kernels: softmax, log-softmax, fused softmax-cross-entropy."""
