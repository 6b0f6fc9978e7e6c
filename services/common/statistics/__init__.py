"""Statistics for deciding between versions, computed from what the rollups keep (never raw runs).

A metric's values arrive as a `BinnedSample`: distinct values (a sketch's bin representatives, or a
score's exact values) with their counts. Every test here reads counts only, so a comparison of two
versions with a million runs each costs what a few thousand bins cost. One engine for every caller:
compare, winner, experiments and regressions all use these functions.
"""

from services.common.statistics.binned import BinnedSample
from services.common.statistics.holm import holm
from services.common.statistics.proportions import ProportionTest, compare_proportions
from services.common.statistics.quantiles import QuantileTest, compare_quantile
from services.common.statistics.rank import RankTest, mann_whitney_u

__all__ = [
    "BinnedSample",
    "ProportionTest",
    "QuantileTest",
    "RankTest",
    "compare_proportions",
    "compare_quantile",
    "holm",
    "mann_whitney_u",
]
