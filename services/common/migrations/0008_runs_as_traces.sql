-- Runs are traces: each trace's figures, assembled from its spans as they arrive, and rollups of
-- runs by app version (per-run latency, cost, tokens and errors).

-- One row per trace: the sums and extremes of its spans stored so far, its root span's interval
-- once stored, and what of it run_rollups count (counted_*; counted_at NULL: not counted yet). A
-- run is counted when its root span is stored, or once VANE_RUN_SETTLE_SECONDS passed since its
-- first span; a span stored later changes it, and run_rollups, exactly once (its batch's
-- transaction retracts what was counted and counts the new figures).
CREATE TABLE trace_runs (
    project_id uuid NOT NULL,
    trace_id bytea NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    span_count integer NOT NULL,
    error_count integer NOT NULL,
    start_ns bigint NOT NULL,
    end_ns bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost bigint NOT NULL, -- picodollars (10^-12 USD): exact sums
    root_start_ns bigint,
    root_end_ns bigint,
    project_name text NOT NULL, -- the root span's app (the first span's until the root is stored)
    app_version text NOT NULL,
    counted_at timestamptz,
    counted_minute bigint,
    counted_project_name text,
    counted_app_version text,
    counted_latency_ms double precision,
    counted_cost bigint,
    counted_error boolean,
    counted_input_tokens bigint,
    counted_output_tokens bigint,
    PRIMARY KEY (project_id, trace_id)
) WITH (fillfactor = 80);
-- The runs list, newest first; runs not counted yet, oldest first (the settle sweep); retention by age.
CREATE INDEX trace_runs_recent ON trace_runs (project_id, start_ns DESC);
CREATE INDEX trace_runs_waiting ON trace_runs (first_seen) WHERE counted_at IS NULL;
CREATE INDEX trace_runs_age ON trace_runs USING brin (first_seen);

-- Rollups of runs by app: the same levels and blocks as `rollups`, a run counted in the block of its
-- start (its root's, or its first span's). Sketches hold run_latency_ms and run_cost.
CREATE TABLE run_rollups (
    project_id uuid NOT NULL,
    width_minutes integer NOT NULL,
    bucket bigint NOT NULL,
    project_name text NOT NULL,
    app_version text NOT NULL,
    run_count bigint NOT NULL DEFAULT 0,
    error_count bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost numeric NOT NULL DEFAULT 0,
    first_ns bigint,
    last_ns bigint,
    sketches bytea COMPRESSION lz4 NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, width_minutes, bucket, project_name, app_version)
) WITH (fillfactor = 80);
