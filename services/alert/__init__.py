"""Alerts: quality drops, latency or cost rises, volume jumps."""
