"""Public dropout functions (validation + dispatch to fastnn._cpu.dropout)."""
__all__ = []
