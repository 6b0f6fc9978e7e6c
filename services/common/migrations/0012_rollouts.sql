-- Guarded rollouts: a label's split moved step by step from one version to another, each step
-- advanced (or rolled back) by the registry's rollout worker in one transaction with the label move.

CREATE TABLE rollouts (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    prompt text NOT NULL,
    label text NOT NULL,
    from_version integer NOT NULL,
    to_version integer NOT NULL,
    steps integer[] NOT NULL, -- to_version's weight at each step, rising to 100
    step integer NOT NULL DEFAULT 0, -- index into steps of the current step
    min_samples_per_step integer NOT NULL CHECK (min_samples_per_step > 0),
    guardrails text[] NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'completed', 'rolled_back', 'aborted')),
    step_started_at timestamptz NOT NULL,
    step_baseline integer, -- to_version's runs counted in the step's first minute before it began (NULL: not asked yet)
    checked_at timestamptz, -- the worker's last look: running rollouts are visited oldest look first
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- A label move committed but not yet announced (caches dropped, replicas and SDKs told): set
    -- with each move, cleared once announced, so a crash in between is announced after restart.
    announce_pending boolean NOT NULL DEFAULT false,
    -- The outbox of the rollback event: written with the rollback, published to NATS after it commits.
    rollback_event jsonb,
    rollback_published_at timestamptz,
    FOREIGN KEY (project_id, prompt) REFERENCES prompts (project_id, name) ON DELETE CASCADE
);
-- At most one running rollout per label; concurrent starts are refused by the index itself.
CREATE UNIQUE INDEX rollouts_one_running ON rollouts (project_id, prompt, label) WHERE status = 'running';
CREATE INDEX rollouts_of_prompt ON rollouts (project_id, prompt, created_at DESC);
CREATE INDEX rollouts_to_visit ON rollouts (checked_at NULLS FIRST) WHERE status = 'running';
CREATE INDEX rollouts_unannounced ON rollouts (created_at) WHERE announce_pending;
CREATE INDEX rollouts_unpublished ON rollouts (created_at)
    WHERE rollback_event IS NOT NULL AND rollback_published_at IS NULL;

-- Every step a rollout took; (step, event) is unique, so no step is ever recorded twice.
CREATE TABLE rollout_history (
    id bigserial PRIMARY KEY,
    rollout_id uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    step integer NOT NULL,
    weight integer NOT NULL, -- to_version's weight from this moment
    event text NOT NULL CHECK (event IN ('started', 'advanced', 'completed', 'rolled_back', 'aborted')),
    reason text NOT NULL,
    UNIQUE (rollout_id, step, event)
);
