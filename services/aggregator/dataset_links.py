"""Links stored spans to the dataset items they ran (vane.dataset.name, .item_id, .item_version on
the span), in the transaction that stores them. Almost no batch carries one: a batch pays one scan
of its COPY bytes for the attribute's name, and only a batch that has it pays the query."""

from __future__ import annotations

from services.aggregator.store import Conn, RunBatch, StoredRuns

MARKER = b"vane.dataset.item_id"

_LINK = """
INSERT INTO dataset_runs (project_id, dataset, item_id, item_version, trace_id, span_id, project_name,
                          app_version, start_time, output)
SELECT r.project_id, j.a ->> 'vane.dataset.name', j.a ->> 'vane.dataset.item_id',
       CASE WHEN (j.a ->> 'vane.dataset.item_version') ~ '^[0-9]{1,9}$'
            THEN (j.a ->> 'vane.dataset.item_version')::int ELSE 1 END,
       r.trace_id, r.span_id, r.project_name, r.app_version, r.start_time, r.output
FROM runs r CROSS JOIN LATERAL (SELECT r.attributes_json::jsonb AS a) j
WHERE r.trace_id = ANY($1::bytea[]) AND r.attributes_json LIKE '%vane.dataset.item_id%'
  AND j.a ? 'vane.dataset.name' AND j.a ? 'vane.dataset.item_id'
ON CONFLICT DO NOTHING
"""


async def link(conn: Conn, batch: RunBatch, stored: StoredRuns) -> None:
    if not stored.count or not any(MARKER in d.rows for d in batch.parts):
        return
    raw = stored.trace_ids
    traces = list({raw[i : i + 16] for i in range(0, len(raw), 16)})
    await conn.execute(_LINK, traces)
