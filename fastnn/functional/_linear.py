"""Public linear functions (validation + dispatch to fastnn._cpu.linear)."""
__all__ = []
