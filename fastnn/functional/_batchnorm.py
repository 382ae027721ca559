"""Public batchnorm functions (validation + dispatch to fastnn._cpu.batchnorm)."""
__all__ = []
