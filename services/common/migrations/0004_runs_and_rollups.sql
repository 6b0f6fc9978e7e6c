-- The aggregator: every stored run (span), every score, and rollups by version.

-- Runs, partitioned by day of start time so that old days drop as whole tables. The key holds
-- the partition column, so a redelivered span (same project, start, trace, span) is stored once.
-- Partitions are created ahead by the aggregator and on demand for any day a batch carries.
CREATE TABLE runs (
    project_id uuid NOT NULL,
    start_time timestamptz NOT NULL,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    parent_span_id bytea NOT NULL DEFAULT '',
    start_ns bigint NOT NULL,
    end_ns bigint NOT NULL,
    is_generation boolean NOT NULL,
    name text NOT NULL DEFAULT '',
    kind text NOT NULL DEFAULT '',
    project_name text NOT NULL DEFAULT '',
    app_version text NOT NULL DEFAULT '',
    project_type text NOT NULL DEFAULT '',
    prompt_name text NOT NULL DEFAULT '',
    prompt_version integer NOT NULL DEFAULT 0,
    prompt_label text NOT NULL DEFAULT '',
    model text NOT NULL DEFAULT '',
    latency_ms double precision NOT NULL,
    ttft_ms double precision,
    input_tokens bigint,
    output_tokens bigint,
    total_tokens bigint,
    cached_input_tokens bigint,
    cost double precision,
    status smallint NOT NULL DEFAULT 0,
    error_message text NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    user_id text NOT NULL DEFAULT '',
    input text NOT NULL DEFAULT '',
    output text NOT NULL DEFAULT '',
    attributes_json text NOT NULL DEFAULT '',
    metadata_json text NOT NULL DEFAULT '',
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, start_time, trace_id, span_id)
) PARTITION BY RANGE (start_time);
-- Scores find their span, and a trace's view its spans.
CREATE INDEX runs_trace ON runs (project_id, trace_id);

-- Scores: score_id is the idempotency key. A score is pending (applied = false) until the run it
-- names is stored; then it is counted into that run's rollups in the same transaction.
CREATE TABLE scores (
    project_id uuid NOT NULL,
    score_id text NOT NULL,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL DEFAULT '', -- empty: a score of the whole trace
    name text NOT NULL,
    value double precision NOT NULL DEFAULT 0,
    string_value text NOT NULL DEFAULT '',
    data_type smallint NOT NULL DEFAULT 0,
    source smallint NOT NULL DEFAULT 0,
    comment text NOT NULL DEFAULT '',
    evaluator_name text NOT NULL DEFAULT '',
    evaluator_version text NOT NULL DEFAULT '',
    is_error boolean NOT NULL DEFAULT false,
    eval_cost double precision,
    created_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied boolean NOT NULL DEFAULT false,
    applied_at timestamptz,
    -- the generation it counts toward (empty when its trace has no generation)
    target_span_id bytea,
    PRIMARY KEY (project_id, score_id)
);
CREATE INDEX scores_trace ON scores (project_id, trace_id);
CREATE INDEX scores_pending ON scores (project_id, trace_id) WHERE NOT applied;
CREATE INDEX scores_pending_age ON scores (received_at) WHERE NOT applied;

-- Rollups: one row per (project, level, bucket, app version, prompt name, prompt version, model).
-- width_minutes is the level (1 minute up to 32 days, each dividing the next) and bucket the
-- epoch minute its block starts at, so a query covers any range with a few aligned blocks.
-- Sketches (DDSketch bins of latency, ttft, tokens, cost, each score name) are one msgpack blob,
-- compressed with lz4 (fast to read) when TOASTed.
CREATE TABLE rollups (
    project_id uuid NOT NULL,
    width_minutes integer NOT NULL,
    bucket bigint NOT NULL,
    app_version text NOT NULL,
    prompt_name text NOT NULL,
    prompt_version integer NOT NULL,
    model text NOT NULL,
    generation_count bigint NOT NULL DEFAULT 0,
    error_count bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost double precision NOT NULL DEFAULT 0,
    first_ns bigint,
    last_ns bigint,
    sketches bytea COMPRESSION lz4 NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, width_minutes, bucket, app_version, prompt_name, prompt_version, model)
) WITH (fillfactor = 80);
