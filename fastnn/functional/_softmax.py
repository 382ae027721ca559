"""Public softmax functions (validation + dispatch to fastnn._cpu.softmax)."""
__all__ = []
