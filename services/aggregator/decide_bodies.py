"""Response bodies of compare and winner, as types: what /schema/openapi.json documents."""

from __future__ import annotations

from typing import Literal

import msgspec


class ArmEstimate(msgspec.Struct):
    n: int
    estimate: float | None


class MetricComparison(msgspec.Struct, kw_only=True):
    """b against a on one metric and statistic: the test's answer and its Holm-corrected verdict."""

    metric: str
    statistic: Literal["median", "p95", "rate", "distribution"]
    better: Literal["lower", "higher"]
    a: ArmEstimate
    b: ArmEstimate
    difference: float | None  # b − a (a distribution: the total variation distance of the shares)
    relative_difference: float | None
    ci95: list[float] | None
    p_value: float | None
    p_value_holm: float | None
    test: (
        Literal[
            "mann_whitney_u",
            "bootstrap",
            "two_proportion_z",
            "fisher_exact",
            "chi_square",
            "wilcoxon_signed_rank",
            "mcnemar",
        ]
        | None
    )
    verdict: Literal["b_better", "b_worse", "no_difference", "not_enough_data", "different"]
    samples_needed: int | None  # per arm, for 80% power at the observed effect (not_enough_data only)
    pairs: int | msgspec.UnsetType = msgspec.UNSET  # items both versions ran (compare with dataset=)


class Side(msgspec.Struct, kw_only=True):
    version: int | str
    n: int  # generations
    project_name: str | None = None
    run_count: int | None = None


class ComparisonBody(msgspec.Struct):
    kind: Literal["prompt", "app"]
    name: str | None
    a: Side
    b: Side
    alpha: float
    metrics: list[MetricComparison]
    dataset: str | msgspec.UnsetType = msgspec.UNSET  # compare with dataset=: runs paired by item
    pairs: int | msgspec.UnsetType = msgspec.UNSET


class Ranked(msgspec.Struct, kw_only=True):
    version: int | str
    score: float
    rank: int
    contributions: dict[str, float]
    metrics: dict[str, float | None]
    project_name: str | None = None


class WinnerBody(msgspec.Struct):
    ranking: list[Ranked]
    winner: int | str | None
    clear: bool
    reason: str
