"""Public losses functions (validation + dispatch to fastnn._cpu.losses)."""
__all__ = []
