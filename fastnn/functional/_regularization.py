"""Public regularization functions (validation + dispatch to fastnn._cpu.regularization)."""
__all__ = []
