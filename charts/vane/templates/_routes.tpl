{{/* The gateway's route table: which service answers each public path at the one origin. Prefix paths match
     whole path segments and the longest match wins (the Ingress rules); "regex" paths are for the aggregator's
     metrics of one prompt, under the registry's /api/v1/prompts. A path no route names goes to "/": the
     aggregator (the dashboard, the query API, deciding, experiments). */}}
{{- define "vane.routes" -}}
- {path: "/api/v1/prompts/[^/]+/(metrics|timeseries)", type: regex, service: aggregator}
- {path: /api/v1/prompts, service: registry}
- {path: /api/v1/keys, service: registry}
- {path: /api/v1/projects, service: registry}
- {path: /api/public/v2/prompts, service: registry}
- {path: /api/v1/audit, service: registry}
- {path: /v1/traces, service: ingest}
- {path: /api/public/otel, service: ingest}
- {path: /tracer, service: ingest}
- {path: /api/v1/scores, service: ingest}
- {path: /api/v1/scores/pending, service: aggregator}
- {path: /api/v1/score-configs, service: ingest}
- {path: /api/v1/models, service: ingest}
- {path: /api/public/scores, service: ingest}
- {path: /api/public/ingestion, service: ingest}
- {path: /api/public/projects, service: ingest}
- {path: /v1/logs, service: ingest}
- {path: /api/v1/redaction, service: ingest}
- {path: /api/v1/evaluators, service: evaluator}
- {path: /api/v1/evaluations, service: evaluator}
- {path: /api/v1/alerts, service: alert}
- {path: /, service: aggregator}
{{- end -}}
