"""A sample held as distinct values and their counts: what a quantile sketch's bins are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinnedSample:
    """`values` ascending and distinct, `counts[i]` > 0 of them (a binned sample, with ties)."""

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, counts: np.ndarray) -> BinnedSample:
        """From values in any order, repeats allowed; zero counts dropped."""
        values = np.asarray(values, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.int64)
        keep = counts > 0
        distinct, where = np.unique(values[keep], return_inverse=True)
        summed = np.bincount(where, weights=counts[keep], minlength=distinct.size).astype(np.int64)
        return cls(distinct, summed)

    @classmethod
    def of_values(cls, values: np.ndarray) -> BinnedSample:
        distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
        return cls(distinct, counts.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float | None:
        """The order statistic at rank floor(q·(n−1)), as the sketches answer it."""
        return quantile_of_counts(self.values, self.counts, q)

    def mean(self) -> float | None:
        n = self.n
        return float(np.dot(self.values, self.counts) / n) if n else None

    def std(self) -> float:
        n = self.n
        if n < 2:
            return 0.0
        mean = np.dot(self.values, self.counts) / n
        return float(np.sqrt(np.dot((self.values - mean) ** 2, self.counts) / (n - 1)))


def quantile_of_counts(values: np.ndarray, counts: np.ndarray, q: float) -> float | None:
    cumulative = np.cumsum(counts)
    if cumulative.size == 0 or cumulative[-1] == 0:
        return None
    rank = np.floor(q * (cumulative[-1] - 1))
    return float(values[min(int(np.searchsorted(cumulative, rank, side="right")), values.size - 1)])
