"""Weight initializers (filled in by the core issue)."""
