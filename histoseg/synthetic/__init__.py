"""Synthetic kidney-like slides with exact labels: the package's runnable default data."""
