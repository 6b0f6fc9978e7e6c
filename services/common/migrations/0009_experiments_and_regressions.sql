-- Experiments on a traffic-split label: the arms and weights declared when it started, the metric
-- it decides on, its guardrails, and the decision it was stopped with.
CREATE TABLE experiments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    prompt_name text NOT NULL,
    label text NOT NULL,
    arms jsonb NOT NULL,  -- [{"version": 1, "weight": 50}, …]
    primary_metric text NOT NULL,
    guardrails text[] NOT NULL DEFAULT '{}',
    min_samples_per_arm integer NOT NULL DEFAULT 100 CHECK (min_samples_per_arm > 0),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped')),
    started_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz,
    decision jsonb,
    UNIQUE (project_id, name)
);

-- Each label move the regression check has settled (checked, or superseded by a later move before
-- the new version had enough runs): a restart resumes at the moves not settled yet.
CREATE TABLE regression_checks (
    move_id bigint PRIMARY KEY REFERENCES prompt_label_history (id) ON DELETE CASCADE,
    outcome text NOT NULL CHECK (outcome IN ('checked', 'superseded')),
    checked_at timestamptz NOT NULL DEFAULT now()
);

-- A significant worsening found after a label move, one row per metric and statistic; `published`
-- turns true once it is on NATS (an outbox: a crash before that publishes it again, same id).
CREATE TABLE regressions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    move_id bigint NOT NULL,
    prompt_name text NOT NULL,
    label text NOT NULL,
    from_version integer NOT NULL,
    to_version integer NOT NULL,
    moved_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    metric text NOT NULL,
    statistic text NOT NULL,
    comparison jsonb NOT NULL,
    published boolean NOT NULL DEFAULT false,
    UNIQUE (move_id, metric, statistic)
);
CREATE INDEX regressions_prompt ON regressions (project_id, prompt_name, detected_at);
CREATE INDEX regressions_unpublished ON regressions (detected_at) WHERE NOT published;
