"""Which evaluations a span gets: the eval tags its resource carries, then the project's rules
(filter and sampling), each bound to its inputs through its mapping. Pure: same span, same plan.

Eval tags come as Future AGI's traceAI sends them (`eval_name`, `value` = span kind, `mapping`,
`config`, `custom_eval_name`) or with Vane's names (`evaluator`, `span_kind`, `name`). traceAI's
system evals that Vane also runs are translated: their evaluator, their input names, their rubric.
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.catalogue import CATALOGUE, TRACEAI_EVALS, EvaluatorSpec
from services.evaluator.mapping import resolve_inputs
from services.evaluator.spans import SpanView

# uuid5 namespace of evaluator score ids: score_id = uuid5(NS, project/trace/span/name/evaluator/version).
SCORE_NAMESPACE = uuid.UUID("6f0b7a52-3c55-4d8e-9f1e-5a7e0c4b9d21")
FILTER_KEYS = ("app_version", "prompt_name", "prompt_label", "span_kind", "model", "prompt_version")


# traceAI system eval name -> the Vane evaluator that scores the same thing (shared with ingest,
# which answers traceAI's register() from it).
TRACEAI_ALIASES = TRACEAI_EVALS
_TRACEAI_KINDS = {"unknown": "span"}


@dataclass(frozen=True)
class ProjectRule:
    id: uuid.UUID
    name: str
    evaluator: str
    filter: Mapping[str, Any] = field(default_factory=dict)
    mapping: Mapping[str, str] = field(default_factory=dict)
    sampling_rate: float = 1.0
    config: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Planned:
    """One evaluation to run on one span: the score's name, its evaluator and its bound inputs."""

    name: str
    spec: EvaluatorSpec
    config: Mapping[str, Any]
    inputs: Mapping[str, str]
    missing: Mapping[str, str]  # input -> the mapped path where nothing was found
    origin: str  # tag, rule or backfill
    rule_id: uuid.UUID | None = None

    def score_id(self, span: SpanView) -> uuid.UUID:
        """The same for every delivery of this span: the idempotency key of its score."""
        key = f"{span.project_id}/{span.key}/{self.name}/{self.spec.name}/{self.spec.version}"
        return uuid.uuid5(SCORE_NAMESPACE, key)


@dataclass(frozen=True)
class TagEvaluation:
    name: str
    evaluator: str
    span_kind: str
    mapping: Mapping[str, str]
    config: Mapping[str, Any]


def read_tag(tag: Any) -> TagEvaluation | None:
    """An eval tag in either spelling, translated to Vane's evaluator; None when Vane has no such evaluator."""
    if not isinstance(tag, Mapping):
        return None
    name = str(tag.get("evaluator") or tag.get("eval_name") or "")
    alias = TRACEAI_ALIASES.get(name)  # renames traceAI input names; Vane names pass unchanged
    evaluator = alias.evaluator if alias else name
    if evaluator not in CATALOGUE:
        return None
    raw_mapping = tag.get("mapping") or {}
    renames = alias.inputs if alias else {}
    mapping = {renames.get(k, k): str(v) for k, v in raw_mapping.items()} if isinstance(raw_mapping, Mapping) else {}
    raw_config = tag.get("config") or {}
    config = {**(alias.config if alias else {}), **(raw_config if isinstance(raw_config, Mapping) else {})}
    kind = str(tag.get("span_kind") or tag.get("value") or "").lower()
    return TagEvaluation(
        name=str(tag.get("name") or tag.get("custom_eval_name") or name),
        evaluator=evaluator,
        span_kind=_TRACEAI_KINDS.get(kind, kind),
        mapping=mapping,
        config=config,
    )


def matches(span_filter: Mapping[str, Any], span: SpanView) -> bool:
    """Every key of the filter holds: a value or a list of values, each a glob (`gpt-4o*`)."""
    for key, wanted in span_filter.items():
        if wanted is None or wanted == [] or wanted == "":
            continue
        actual = {
            "app_version": span.app_version,
            "prompt_name": span.prompt_name,
            "prompt_label": span.prompt_label,
            "span_kind": span.kind,
            "model": span.model,
            "prompt_version": str(span.prompt_version),
        }.get(key)
        if actual is None:
            return False
        options = wanted if isinstance(wanted, list) else [wanted]
        if key == "span_kind":
            actual, options = actual.lower(), [str(o).lower() for o in options]
        if not any(fnmatch.fnmatchcase(actual, str(option)) for option in options):
            return False
    return True


def sampled(span: SpanView, salt: str, rate: float) -> bool:
    """A deterministic draw per (span, rule): a redelivered span is sampled the same way."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{span.key}/{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def plan(span: SpanView, rules: Iterable[ProjectRule]) -> list[Planned]:
    """The span's evaluations, tags first, one per score name."""
    planned: dict[str, Planned] = {}
    for tag in filter(None, map(read_tag, span.eval_tags)):
        if tag.span_kind and tag.span_kind != span.kind:
            continue
        rate = float(tag.config.get("sampling_rate", 1.0))
        if tag.name not in planned and sampled(span, f"tag:{tag.name}", rate):
            planned[tag.name] = bind(span, tag.name, CATALOGUE[tag.evaluator], tag.mapping, tag.config, "tag")
    for rule in rules:
        if not rule.enabled or rule.name in planned or rule.evaluator not in CATALOGUE:
            continue
        if matches(rule.filter, span) and sampled(span, str(rule.id), rule.sampling_rate):
            spec = CATALOGUE[rule.evaluator]
            planned[rule.name] = bind(span, rule.name, spec, rule.mapping, rule.config, "rule", rule.id)
    return list(planned.values())


def bind(
    span: SpanView,
    name: str,
    spec: EvaluatorSpec,
    mapping: Mapping[str, str],
    config: Mapping[str, Any],
    origin: str,
    rule_id: uuid.UUID | None = None,
) -> Planned:
    """An evaluation of the span with its inputs resolved (constants such as config.reference count)."""
    constants = {k: config[k] for k in spec.inputs if k in config}
    inputs, missing = resolve_inputs(span, mapping, constants)
    return Planned(name, spec, dict(config), inputs, missing, origin, rule_id)


def unknown_tag_names(span: SpanView) -> list[str]:
    """Eval tags naming an evaluator Vane does not have, for a metric and a log line."""
    return [
        str(t.get("evaluator") or t.get("eval_name") or "?")
        for t in span.eval_tags
        if isinstance(t, Mapping) and read_tag(t) is None
    ]
