"""Preprocessing estimators (filled in by the core issue)."""
