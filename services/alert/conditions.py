"""A rule's condition against what its windows show: plain functions over plain data.

- `above` / `below`: the window's statistic against the threshold (and the warning level).
- `change`: the statistic's relative change from the baseline window just before the window. It
  counts only when the change is also significant at ALPHA, with the test the compare API uses for
  that statistic (services.common.statistics): the binned Mann-Whitney U (`mann_whitney_u`) for
  medians and means, the exact-quantile bootstrap (`compare_quantile`) for p95 and p99, the two
  proportions test (`compare_proportions`) for rates. Counts and totals have no test: the change
  alone decides.
- `anomaly`: the modified z-score of Iglewicz and Hoaglin ("How to Detect and Handle Outliers",
  ASQC 1993): 0.6745·(x − median)/MAD of the same window on each of the previous HISTORY_DAYS
  days, so a daily cycle is its own baseline; with MAD = 0, the mean absolute deviation
  (×1.253314) stands in, as IBM's and Iglewicz-Hoaglin's variant does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from services.alert.readings import Window
from services.alert.rules import DEFAULT_SENSITIVITY, RATES, Rule
from services.common.statistics import compare_proportions, compare_quantile, mann_whitney_u

Level = Literal["none", "warning", "alert", "no_data"]
ALPHA = 0.05
HISTORY_DAYS = 7
MIN_HISTORY = 3  # fewer past days with data: the anomaly condition has nothing to stand on
_TOKENS = {"input_tokens", "output_tokens", "total_tokens"}


@dataclass(frozen=True)
class Outcome:
    level: Level
    value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def observe(rule: Rule, w: Window) -> tuple[int, float | None]:
    """(samples, the rule's statistic) of a window; the statistic is None without samples."""
    metric, statistic = rule.metric, rule.statistic
    if metric in RATES:
        if statistic == "count":
            return w.count, float(w.errors)
        return w.count, (w.errors / w.count if w.count else None)
    summary = w.summaries.get(metric)
    n = summary.count if summary else 0
    if statistic == "count":
        return n, float(n)  # a count of nothing is a count: 0 (volume dropped), not missing data
    if summary is None or n == 0:
        return 0, None
    if statistic == "total":
        if metric in ("cost", "run_cost"):
            return n, float(w.cost)
        if metric in _TOKENS:
            return n, float(
                {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens}.get(
                    metric, w.input_tokens + w.output_tokens
                )
            )
        return n, summary.total
    if statistic in ("mean", "rate"):
        return n, summary.mean
    q = {"median": 0.5, "p95": 0.95, "p99": 0.99}[statistic]
    return n, summary.quantiles[q]


def _level(beyond_alert: bool, beyond_warning: bool) -> Level:
    return "alert" if beyond_alert else "warning" if beyond_warning else "none"


def threshold(rule: Rule, current: Window) -> Outcome:
    n, value = observe(rule, current)
    if value is None or (rule.statistic != "count" and n < rule.body.min_samples):
        return Outcome("no_data", value, {"n": n})
    c, warning = rule.body.condition, rule.body.warning
    assert c.threshold is not None
    if c.op == "above":
        level = _level(value > c.threshold, warning is not None and value > warning)
    else:
        level = _level(value < c.threshold, warning is not None and value < warning)
    return Outcome(level, value, {"n": n, "threshold": c.threshold})


def _p_value(rule: Rule, current: Window, baseline: Window) -> tuple[float | None, str | None]:
    """The p-value of "no change" between the windows for the rule's statistic (None: no test applies)."""
    if rule.statistic in ("count", "total"):
        return None, None
    if rule.metric in RATES:
        test = compare_proportions(baseline.errors, baseline.count, current.errors, current.count)
        return test.p_value, test.test
    a, b = baseline.sample(rule.metric), current.sample(rule.metric)
    if a is None or b is None:
        return None, None
    if rule.statistic in ("p95", "p99"):
        found = compare_quantile(a, b, 0.95 if rule.statistic == "p95" else 0.99)
        return found.p_value, "bootstrap"
    return mann_whitney_u(a, b).p_value, "mann_whitney_u"


def change(rule: Rule, current: Window, baseline: Window) -> Outcome:
    n, value = observe(rule, current)
    n_base, base = observe(rule, baseline)
    enough = rule.statistic == "count" or min(n, n_base) >= rule.body.min_samples
    if value is None or base is None or base == 0 or not enough:
        return Outcome("no_data", value, {"n": n, "baseline": base, "baseline_n": n_base})
    pct = rule.body.condition.pct
    assert pct is not None
    moved = (value - base) / abs(base) * 100
    p_value, test = _p_value(rule, current, baseline)
    significant = p_value is None or p_value < ALPHA

    def beyond(limit: float | None) -> bool:
        return limit is not None and significant and (moved >= limit if limit > 0 else moved <= limit)

    details = {"n": n, "baseline": base, "baseline_n": n_base, "change_pct": moved, "p_value": p_value, "test": test}
    return Outcome(_level(beyond(pct), beyond(rule.body.warning)), value, details)


def robust_z(value: float, history: Sequence[float]) -> tuple[float, float]:
    """(modified z-score of value against history, the history's median)."""
    past = np.asarray(history, dtype=np.float64)
    median = float(np.median(past))
    mad = float(np.median(np.abs(past - median)))
    if mad > 0:
        return 0.6745 * (value - median) / mad, median
    mean_ad = float(np.mean(np.abs(past - median)))
    if mean_ad > 0:
        return (value - median) / (1.253314 * mean_ad), median
    return (0.0 if value == median else math.copysign(math.inf, value - median)), median


def anomaly(rule: Rule, current: Window, history: Sequence[Window]) -> Outcome:
    n, value = observe(rule, current)
    if value is None or (rule.statistic != "count" and n < rule.body.min_samples):
        return Outcome("no_data", value, {"n": n})
    # A past day without samples says nothing (the app may not have existed yet), even for a count.
    past = [v for h in history for hn, v in [observe(rule, h)] if v is not None and hn > 0]
    if len(past) < MIN_HISTORY:
        return Outcome("no_data", value, {"n": n, "history_days": len(past)})
    z, expected = robust_z(value, past)
    sensitivity = rule.body.condition.sensitivity or DEFAULT_SENSITIVITY
    warning = rule.body.warning
    level = _level(abs(z) > sensitivity, warning is not None and abs(z) > warning)
    return Outcome(level, value, {"n": n, "z": z if math.isfinite(z) else None, "expected": expected})
