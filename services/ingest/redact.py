"""Redaction at ingest: each project's rules (services/common/redaction.py) applied to its spans'
input, output, attributes and error message after they are normalised and before they are
published, so nothing downstream (the stream, the runs store, the evaluator) ever holds the text.

A redacted span carries `vane.redacted` ({detector: count}) among its attributes, and
`vane_ingest_redactions_total` counts by detector. A project without rules costs one dict lookup.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
from litestar import get, put
from litestar.types import ControllerRouterHandler
from prometheus_client import Counter as Metric
from vane.v1.bus_pb2 import CanonicalSpan

from services.common.redaction import COUNT_ATTRIBUTE, RedactionRules, Redactor, parse_rules

REDACTIONS = Metric("vane_ingest_redactions_total", "values replaced by PII redaction at ingest", ["detector"])
_RULES_CACHE_SECONDS = 5.0  # how soon a rule change reaches every ingest replica


def redact_records(redactor: Redactor, records: list[bytes]) -> list[bytes]:
    """The records with the project's rules applied; a record with nothing to redact is kept as it was."""
    out = []
    for record in records:
        span = CanonicalSpan.FromString(record)
        counts: Counter[str] = Counter()
        span.input = redactor.json_text(span.input, counts)
        span.output = redactor.json_text(span.output, counts)
        span.error_message = redactor.text(span.error_message, counts)
        attributes = redactor.json_text(span.attributes_json, counts)
        if not counts:
            out.append(record)
            continue
        try:
            parsed = json.loads(attributes) if attributes else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            parsed[COUNT_ATTRIBUTE] = dict(counts)
            attributes = json.dumps(parsed, ensure_ascii=False)
        span.attributes_json = attributes
        for detector, n in counts.items():
            REDACTIONS.labels(detector).inc(n)
        out.append(span.SerializeToString())
    return out


class RedactionStore:
    """Each project's rules, from Postgres, cached in the process for a few seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[uuid.UUID, tuple[float, Redactor | None]] = {}

    async def redactor_for(self, project_id: uuid.UUID) -> Redactor | None:
        now = time.monotonic()
        cached = self._cache.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        rules = await self.rules(project_id)
        redactor = None if rules.empty else Redactor(rules)
        self._cache[project_id] = (now + _RULES_CACHE_SECONDS, redactor)
        return redactor

    async def rules(self, project_id: uuid.UUID) -> RedactionRules:
        row = await self._pool.fetchrow(
            "SELECT detectors, patterns FROM redaction_rules WHERE project_id = $1", project_id
        )
        if row is None:
            return RedactionRules()
        return parse_rules({"detectors": list(row["detectors"]), "patterns": json.loads(row["patterns"])})

    async def put(self, project_id: uuid.UUID, rules: RedactionRules) -> None:
        body = rules.json()
        await self._pool.execute(
            """INSERT INTO redaction_rules (project_id, detectors, patterns) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (project_id) DO UPDATE SET detectors = $2, patterns = $3::jsonb, updated_at = now()""",
            project_id,
            body["detectors"],
            json.dumps(body["patterns"]),
        )
        self._cache.pop(project_id, None)


def redaction_routes(store: RedactionStore) -> list[ControllerRouterHandler]:
    @get("/api/v1/redaction")
    async def get_rules(project_id: uuid.UUID) -> dict[str, Any]:
        """The project's redaction rules: built-in detectors and its own RE2 patterns."""
        return (await store.rules(project_id)).json()

    @put("/api/v1/redaction")
    async def put_rules(project_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
        """Replace the project's redaction rules; spans ingested from then on are redacted by them."""
        rules = parse_rules(data)
        await store.put(project_id, rules)
        return rules.json()

    return [get_rules, put_rules]
