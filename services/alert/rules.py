"""Alert rules: the body users send (typed, for the OpenAPI document) and the validated rule the
evaluator runs. Every refusal names the field at fault (`Invalid("condition.threshold: …")`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from services.common.errors import Invalid

Statistic = Literal["median", "mean", "p95", "p99", "rate", "total", "count"]
Severity = Literal["info", "warning", "critical"]
NoData = Literal["ok", "alert", "keep"]
Op = Literal["above", "below", "change", "anomaly"]
ChannelType = Literal["webhook", "slack", "alertmanager"]

# Generation metrics with a sketch in the rollups; scores are `score:<name>`.
CONTINUOUS = ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "total_tokens", "cost")
RUN_CONTINUOUS = ("run_latency_ms", "run_cost")
RATES = ("error_rate", "run_error_rate")
SCORE_PREFIX = "score:"
# The anomaly condition's default: Iglewicz and Hoaglin's cut-off for a modified z-score.
DEFAULT_SENSITIVITY = 3.5
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class RuleScope(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which generations (or runs) a rule watches; every field given must match."""

    prompt: str | None = None
    prompt_version: int | None = None
    label: str | None = None
    app_version: str | None = None
    model: str | None = None
    project_name: str | None = None  # the app an app version belongs to


class Condition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`above`/`below` a threshold; `change` by pct % against the baseline window just before the
    window; `anomaly`: a robust z-score beyond `sensitivity` against the same window on previous days."""

    op: Op
    threshold: float | None = None
    pct: float | None = None
    baseline_window: str | None = None
    sensitivity: float | None = None


class Channel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: ChannelType
    url: str
    secret: str | None = None  # webhooks: the signing secret (`whsec_<base64>`, or any string)


class RuleBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, rename={"for_": "for"}):
    name: str
    metric: str
    condition: Condition
    scope: RuleScope = msgspec.field(default_factory=RuleScope)
    statistic: Statistic | None = None  # median for continuous metrics, rate for error rates
    window: str = "5m"
    for_: str = "0s"
    min_samples: int = 1
    severity: Severity = "warning"
    channels: list[Channel] = msgspec.field(default_factory=list)
    no_data: NoData = "ok"
    warning: float | None = None
    keep_firing_for: str | None = None
    renotify: str | None = None


@dataclass(frozen=True)
class Rule:
    """A validated rule: its body as stored, with durations in seconds and windows in minutes."""

    body: RuleBody
    statistic: Statistic
    window_minutes: int
    for_seconds: float
    keep_firing_seconds: float
    renotify_seconds: float | None
    baseline_minutes: int
    runs: bool  # a run metric: read from run rollups (per app version)

    @property
    def scope(self) -> RuleScope:
        return self.body.scope

    @property
    def metric(self) -> str:
        return self.body.metric


def refuse(field: str, message: str) -> Invalid:
    """A 400 whose message starts with the field at fault, and whose details name it."""
    return Invalid(f"{field}: {message}", {"field": field})


def parse_duration(value: str, field: str) -> float:
    """`90s`, `5m`, `1h30m`, `2d` → seconds."""
    match = _DURATION.match(value.strip()) if value else None
    if not match or not any(match.groups()):
        raise Invalid(f"{field}: not a duration such as 30s, 5m, 1h or 1d: {value!r}", {"field": field})
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _minutes(value: str, field: str) -> int:
    seconds = parse_duration(value, field)
    if seconds < 60 or seconds % 60:
        raise Invalid(f"{field}: rollups are per minute, so this must be whole minutes (at least 1m)", {"field": field})
    return int(seconds // 60)


def default_statistic(metric: str) -> Statistic:
    return "rate" if metric in RATES else "median"


def _check_metric(metric: str, statistic: Statistic) -> None:
    if metric in RATES:
        if statistic not in ("rate", "count"):
            raise Invalid(f"statistic: {metric} takes rate or count, not {statistic}", {"field": "statistic"})
        return
    if metric.startswith(SCORE_PREFIX) and len(metric) > len(SCORE_PREFIX):
        return  # `rate` of a boolean score is its share of 1s
    if metric in CONTINUOUS or metric in RUN_CONTINUOUS:
        if statistic == "rate":
            raise Invalid(f"statistic: rate applies to error rates and scores, not {metric}", {"field": "statistic"})
        return
    known = ", ".join([*CONTINUOUS, *RATES, *RUN_CONTINUOUS, "score:<name>"])
    raise Invalid(f"metric: unknown metric {metric!r} (one of {known})", {"field": "metric"})


def _check_condition(c: Condition, warning: float | None) -> int:
    """The baseline window in minutes (0 unless `change`); refuses missing or contradictory fields."""
    needed = {"above": "threshold", "below": "threshold", "change": "pct", "anomaly": None}[c.op]
    if needed and getattr(c, needed) is None:
        raise Invalid(f"condition.{needed}: required when op is {c.op}", {"field": f"condition.{needed}"})
    if c.op == "change" and c.pct == 0:
        raise Invalid("condition.pct: must not be 0 (+20: a rise of 20%, -20: a fall)", {"field": "condition.pct"})
    if c.op == "anomaly" and c.sensitivity is not None and c.sensitivity <= 0:
        raise Invalid("condition.sensitivity: must be above 0", {"field": "condition.sensitivity"})
    if warning is not None:
        limit = {"above": c.threshold, "below": c.threshold, "change": c.pct, "anomaly": c.sensitivity}[c.op]
        limit = DEFAULT_SENSITIVITY if limit is None else limit
        before = {
            "above": warning < limit,
            "below": warning > limit,
            "change": 0 < warning / limit < 1,
            "anomaly": 0 < warning < limit,
        }[c.op]
        if not before:
            raise Invalid(
                f"warning: must be reached before the alert level ({limit}) on the way there", {"field": "warning"}
            )
    if c.op != "change":
        return 0
    return _minutes(c.baseline_window or "1h", "condition.baseline_window")


def channel_key(channel: Channel) -> str:
    """What identifies a channel across rules (its type and URL): failures are counted per key."""
    return hashlib.sha256(f"{channel.type} {channel.url}".encode()).hexdigest()[:32]


def signing_key(secret: str) -> bytes:
    """The HMAC key: a Standard Webhooks secret (`whsec_` + base64) decoded, any other string as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :] + "==", validate=False)
    return secret.encode()


def _check_channels(channels: list[Channel]) -> None:
    for i, ch in enumerate(channels):
        parts = urlsplit(ch.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid(f"channels[{i}].url: not an http(s) URL: {ch.url!r}", {"field": f"channels[{i}].url"})
        if ch.type == "webhook":
            if not ch.secret:
                raise refuse(f"channels[{i}].secret", "a webhook needs a signing secret")
            if ch.secret.startswith("whsec_"):
                try:
                    base64.b64decode(ch.secret[len("whsec_") :] + "==", validate=True)
                except binascii.Error:
                    raise Invalid(
                        f"channels[{i}].secret: a whsec_ secret must be base64", {"field": f"channels[{i}].secret"}
                    ) from None
        elif ch.secret is not None:
            raise Invalid(f"channels[{i}].secret: only webhooks are signed", {"field": f"channels[{i}].secret"})


def validate(body: RuleBody) -> Rule:
    if not body.name.strip():
        raise Invalid("name: must not be empty", {"field": "name"})
    statistic = body.statistic or default_statistic(body.metric)
    _check_metric(body.metric, statistic)
    runs = body.metric in RUN_CONTINUOUS or body.metric == "run_error_rate"
    if runs:
        for field in ("prompt", "prompt_version", "label", "model"):
            if getattr(body.scope, field) is not None:
                raise refuse(f"scope.{field}", f"run metrics are per app version (a run has no {field})")
    if body.scope.prompt_version is not None and body.scope.prompt is None:
        raise Invalid("scope.prompt_version: needs scope.prompt", {"field": "scope.prompt_version"})
    if body.min_samples < 1:
        raise Invalid("min_samples: must be at least 1", {"field": "min_samples"})
    baseline = _check_condition(body.condition, body.warning)
    _check_channels(body.channels)
    return Rule(
        body=body,
        statistic=statistic,
        window_minutes=_minutes(body.window, "window"),
        for_seconds=parse_duration(body.for_, "for"),
        keep_firing_seconds=parse_duration(body.keep_firing_for, "keep_firing_for") if body.keep_firing_for else 0.0,
        renotify_seconds=parse_duration(body.renotify, "renotify") if body.renotify else None,
        baseline_minutes=baseline,
        runs=runs,
    )


def refusal(path: str, text: str) -> Invalid:
    """A decoder's complaint about `path` (`condition.threshold`; empty: the body itself) as a refusal
    naming the field: a missing or unknown field is named by the complaint's text."""
    field = path.replace("for_", "for") if path not in ("", "data") else ""
    named = re.match(r"Object (?:missing required|contains unknown) field `(\w+)`", text)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    return refuse(field or "body", text)


def decode_error(exc: msgspec.ValidationError) -> Invalid:
    """msgspec says `… - at `$.condition.threshold``: the field goes first, as every other refusal."""
    message = str(exc)
    found = re.search(r" - at `\$\.?([^`]*)`$", message)
    return refusal(found.group(1) if found else "", message[: found.start()] if found else message)


def parse(raw: bytes | dict[str, Any]) -> Rule:
    """A rule from a request body (bytes) or a stored spec (a dict)."""
    try:
        body = msgspec.json.decode(raw, type=RuleBody) if isinstance(raw, bytes) else msgspec.convert(raw, RuleBody)
    except msgspec.ValidationError as exc:
        raise decode_error(exc) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"body: not JSON: {exc}", {"field": "body"}) from None
    return validate(body)


def merged(spec: dict[str, Any], patch: bytes) -> Rule:
    """A PATCH: the given top-level fields replace the stored ones, and the whole rule is checked again."""
    try:
        changes = msgspec.json.decode(patch)
    except msgspec.DecodeError as exc:
        raise Invalid(f"body: not JSON: {exc}", {"field": "body"}) from None
    if not isinstance(changes, dict):
        raise Invalid("body: must be a JSON object", {"field": "body"})
    return parse({**spec, **changes})


def to_spec(rule: Rule) -> dict[str, Any]:
    """The rule as stored and shown: every top-level field present (its scope and channels too, empty
    or not), unset optional values left out."""
    spec: dict[str, Any] = msgspec.to_builtins(rule.body)
    spec["statistic"] = rule.statistic
    spec.setdefault("scope", {})
    spec.setdefault("channels", [])
    return spec
