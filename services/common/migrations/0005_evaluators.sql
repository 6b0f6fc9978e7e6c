-- The evaluator: project rules (which evaluator scores which spans) and the ledger of every
-- evaluation done, so that a redelivered span neither calls a judge again nor scores twice.

CREATE TABLE evaluator_rules (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,                      -- the score's name
    evaluator text NOT NULL,                 -- a catalogue name: llm_judge, regex, ...
    filter jsonb NOT NULL DEFAULT '{}',      -- app_version, prompt_name, prompt_label, span_kind, model
    mapping jsonb NOT NULL DEFAULT '{}',     -- evaluator input -> span path
    sampling_rate double precision NOT NULL DEFAULT 1 CHECK (sampling_rate >= 0 AND sampling_rate <= 1),
    config jsonb NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);
CREATE INDEX evaluator_rules_project ON evaluator_rules (project_id) WHERE enabled;

-- One row per (span, score name, evaluator, evaluator version): score_id is uuid5 of those.
-- status 'ok' carries the value; 'error' carries the reason in comment and no value.
-- A row is written before its score is published and the span acked: a redelivered span
-- republishes the recorded score (same score_id) instead of evaluating again.
CREATE TABLE evaluations (
    score_id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    name text NOT NULL,
    evaluator text NOT NULL,
    evaluator_version text NOT NULL,
    status text NOT NULL CHECK (status IN ('ok', 'error')),
    value double precision,
    string_value text NOT NULL DEFAULT '',
    data_type text NOT NULL,
    comment text NOT NULL DEFAULT '',
    eval_cost double precision,
    judge_input_tokens bigint,
    judge_output_tokens bigint,
    rule_id uuid,                            -- null: from the span's eval tags or `vane eval run`
    origin text NOT NULL,                    -- tag, rule or backfill
    app_version text NOT NULL DEFAULT '',
    prompt_name text NOT NULL DEFAULT '',
    prompt_version integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evaluations_project_time ON evaluations (project_id, created_at DESC);
CREATE INDEX evaluations_project_status ON evaluations (project_id, status, created_at DESC);
