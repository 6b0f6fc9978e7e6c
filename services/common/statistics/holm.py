"""Holm's step-down correction (Holm 1979, "A simple sequentially rejective multiple test procedure",
Scand. J. Statist. 6:65–70): rejecting where the adjusted p-value is at most α keeps the family-wise
error rate at α across all the metrics compared. Written here: it is a few lines, and SciPy has only
the false-discovery-rate correction."""

from __future__ import annotations

from collections.abc import Sequence


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the smallest α at which each is rejected."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for step, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - step) * p_values[i]))
        adjusted[i] = running
    return adjusted
