"""Deciding from code: time series, compare and winner, read from the aggregator's query API
(VANE_QUERY_URL; else VANE_API_URL when that is the gateway's one origin) as typed objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from vane.config import ClientConfig
from vane.http_json import call

Kind = Literal["prompt", "app"]
Moment = datetime | str | None


@dataclass(frozen=True)
class ArmEstimate:
    n: int
    estimate: float | None


@dataclass(frozen=True)
class Comparison:
    """b against a on one metric and statistic, with the test's answer and its Holm-corrected verdict."""

    metric: str
    statistic: str
    better: str
    a: ArmEstimate
    b: ArmEstimate
    difference: float | None
    relative_difference: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    test: str | None
    verdict: str
    samples_needed: int | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Comparison:
        ci = body.get("ci95")
        return cls(
            metric=body["metric"],
            statistic=body["statistic"],
            better=body["better"],
            a=ArmEstimate(body["a"]["n"], body["a"]["estimate"]),
            b=ArmEstimate(body["b"]["n"], body["b"]["estimate"]),
            difference=body.get("difference"),
            relative_difference=body.get("relative_difference"),
            ci95=(ci[0], ci[1]) if ci else None,
            p_value=body.get("p_value"),
            test=body.get("test"),
            verdict=body["verdict"],
            samples_needed=body.get("samples_needed"),
        )


@dataclass(frozen=True)
class CompareResult:
    kind: str
    name: str | None
    a: int | str
    b: int | str
    n_a: int
    n_b: int
    metrics: list[Comparison]

    def metric(self, metric: str, statistic: str | None = None) -> Comparison:
        """The comparison of one metric (its first statistic, unless one is named)."""
        for c in self.metrics:
            if c.metric == metric and (statistic is None or c.statistic == statistic):
                return c
        raise KeyError(f"{metric} {statistic or ''}".strip())


@dataclass(frozen=True)
class RankedVersion:
    version: int | str
    score: float
    rank: int
    contributions: dict[str, float]
    metrics: dict[str, float | None]
    project_name: str | None = None


@dataclass(frozen=True)
class WinnerResult:
    ranking: list[RankedVersion]
    winner: int | str | None
    clear: bool
    reason: str


@dataclass(frozen=True)
class Marker:
    at: str
    label: str | None
    from_version: int | str | None
    to_version: int | str | None


@dataclass(frozen=True)
class Series:
    version: int | str
    points: list[dict[str, Any]]  # each: "at" and the ROW fields asked for
    project_name: str | None = None


@dataclass(frozen=True)
class TimeSeries:
    interval: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)


class DecidingMixin:
    config: ClientConfig

    def _query(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return call(method, self.config.query_url, path, self.config.secret_key, body, params)

    def timeseries(
        self,
        kind: Kind = "prompt",
        name: str | None = None,
        start: Moment = None,
        end: Moment = None,
        interval: str | None = None,
        metrics: Sequence[str] | None = None,
        model: str | None = None,
        label: str | None = None,
        project_name: str | None = None,
    ) -> TimeSeries:
        """Each version's metrics per interval, with the deployments (label moves, first runs) as markers."""
        if kind == "prompt":
            if not name:
                raise ValueError("timeseries(kind='prompt') needs the prompt's name")
            path = f"/api/v1/prompts/{name}/timeseries"
        else:
            path = "/api/v1/versions/timeseries"
        params = {"from": start, "to": end, "interval": interval, "metrics": metrics, "model": model, "label": label}
        if kind == "app":
            params["project_name"] = project_name
        body = self._query("GET", path, params=params)
        return TimeSeries(
            interval=body["interval"],
            series=[Series(s["version"], s["points"], s.get("project_name")) for s in body["series"]],
            markers=[Marker(m["at"], m["label"], m["from_version"], m["to_version"]) for m in body["markers"]],
        )

    def compare(
        self,
        a: int | str,
        b: int | str,
        kind: Kind = "prompt",
        name: str | None = None,
        start: Moment = None,
        end: Moment = None,
        model: str | None = None,
        label: str | None = None,
        project_name: str | None = None,
        alpha: float | None = None,
    ) -> CompareResult:
        """b against a on every metric, with statistics: see CONTRACT's "Deciding"."""
        params = {
            "kind": kind,
            "name": name,
            "a": a,
            "b": b,
            "from": start,
            "to": end,
            "model": model,
            "label": label,
            "project_name": project_name,
            "alpha": alpha,
        }
        body = self._query("GET", "/api/v1/compare", params=params)
        return CompareResult(
            kind=body["kind"],
            name=body.get("name"),
            a=body["a"]["version"],
            b=body["b"]["version"],
            n_a=body["a"]["n"],
            n_b=body["b"]["n"],
            metrics=[Comparison.of(c) for c in body["metrics"]],
        )

    def winner(
        self,
        weights: Mapping[str, float],
        kind: Kind = "prompt",
        name: str | None = None,
        candidates: Sequence[int | str] | None = None,
        start: Moment = None,
        end: Moment = None,
        normalisation: Literal["min_max", "rank"] | None = None,
        project_name: str | None = None,
    ) -> WinnerResult:
        """The candidates ranked on their weighted, normalised, direction-aware metrics."""
        request: dict[str, Any] = {"kind": kind, "weights": dict(weights)}
        optional = {
            "name": name,
            "candidates": list(candidates) if candidates is not None else None,
            "from": start.isoformat() if isinstance(start, datetime) else start,
            "to": end.isoformat() if isinstance(end, datetime) else end,
            "normalisation": normalisation,
            "project_name": project_name,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        body = self._query("POST", "/api/v1/winner", body=request)
        return WinnerResult(
            ranking=[
                RankedVersion(
                    r["version"], r["score"], r["rank"], r["contributions"], r["metrics"], r.get("project_name")
                )
                for r in body["ranking"]
            ],
            winner=body["winner"],
            clear=body["clear"],
            reason=body["reason"],
        )


@dataclass(frozen=True)
class ExperimentArm:
    version: int
    weight: int
    n: int
    observed_share: float | None


@dataclass(frozen=True)
class Experiment:
    """An experiment on a split label, as GET /api/v1/experiments/{id} answers it."""

    id: str
    name: str
    prompt: str
    label: str
    status: str
    started_at: str
    arms: list[ExperimentArm]
    srm_p_value: float
    srm_mismatch: bool
    primary: dict[str, Any]  # metric, estimates, probability_best, sequential_ci95, verdict, winner
    guardrails: list[Comparison]
    decision: dict[str, Any] | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Experiment:
        return cls(
            id=body["id"],
            name=body["name"],
            prompt=body["prompt"],
            label=body["label"],
            status=body["status"],
            started_at=body["started_at"],
            arms=[ExperimentArm(a["version"], a["weight"], a["n"], a["observed_share"]) for a in body["arms"]],
            srm_p_value=body["srm"]["p_value"],
            srm_mismatch=body["srm"]["mismatch"],
            primary=dict(body["primary"]),
            guardrails=[Comparison.of(c) for c in body["guardrails"]],
            decision=body.get("decision"),
        )


@dataclass(frozen=True)
class Regression:
    id: str
    prompt: str
    label: str
    from_version: int
    to_version: int
    detected_at: str
    metric: str
    comparison: Comparison


class ExperimentsMixin(DecidingMixin):
    """Experiments and regressions (the aggregator's API), beside compare, winner and timeseries."""

    def create_experiment(
        self,
        name: str,
        prompt: str,
        label: str,
        primary_metric: str,
        guardrails: Sequence[str] = (),
        min_samples_per_arm: int = 100,
    ) -> Experiment:
        """Start an experiment on a label that splits traffic (its arms are the split's versions)."""
        body = {
            "name": name,
            "prompt": prompt,
            "label": label,
            "primary_metric": primary_metric,
            "guardrails": list(guardrails),
            "min_samples_per_arm": min_samples_per_arm,
        }
        return Experiment.of(self._query("POST", "/api/v1/experiments", body=body))

    def experiment(self, experiment_id: str) -> Experiment:
        return Experiment.of(self._query("GET", f"/api/v1/experiments/{experiment_id}"))

    def experiments(self) -> list[Experiment]:
        return [Experiment.of(e) for e in self._query("GET", "/api/v1/experiments")["experiments"]]

    def stop_experiment(
        self, experiment_id: str, decision: Literal["promote", "keep"], version: int | None = None
    ) -> Experiment:
        """Stop; "promote" moves the label onto `version` (or the winner) alone."""
        body: dict[str, Any] = {"decision": decision}
        if version is not None:
            body["version"] = version
        return Experiment.of(self._query("POST", f"/api/v1/experiments/{experiment_id}/stop", body=body))

    def regressions(self, prompt: str | None = None, start: Moment = None, end: Moment = None) -> list[Regression]:
        """Significant worsenings found after label moves, newest first."""
        found = self._query("GET", "/api/v1/regressions", params={"prompt": prompt, "from": start, "to": end})
        return [
            Regression(
                r["id"],
                r["prompt"],
                r["label"],
                r["from_version"],
                r["to_version"],
                r["detected_at"],
                r["metric"],
                Comparison.of(r["comparison"]),
            )
            for r in found["regressions"]
        ]
