-- The alert service: rules with their evaluation state, the history of their transitions, silences,
-- and a transactional outbox of notifications (written in the transaction that decided them).

-- A rule as the user wrote it (`spec`, validated by the service) and where its state machine stands.
-- `level` is 'warning' or 'alert' while pending or firing; `active_at` is the last evaluation whose
-- condition held (keep_firing_for counts from it).
CREATE TABLE alert_rules (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    spec jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'pending', 'firing', 'resolved')),
    level text,
    since timestamptz,
    active_at timestamptz,
    notified_at timestamptz,
    refreshed_at timestamptz,
    last_value double precision,
    evaluated_at timestamptz
);
CREATE INDEX alert_rules_project ON alert_rules (project_id, created_at);
-- The evaluator claims rules oldest-evaluated first.
CREATE INDEX alert_rules_due ON alert_rules (evaluated_at NULLS FIRST);

-- Every transition of a rule, and each regression or rollback that arrived from the bus.
-- `decision_id` is the decision's own id: a redelivered decision is recorded once.
CREATE TABLE alert_events (
    id bigserial PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    rule_id uuid,
    kind text NOT NULL CHECK (kind IN ('rule', 'regression', 'rollback', 'channel_disabled')),
    state text NOT NULL,
    severity text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    value double precision,
    silenced boolean NOT NULL DEFAULT false,
    notified boolean NOT NULL DEFAULT false,
    body jsonb NOT NULL,
    decision_id text,
    UNIQUE (project_id, decision_id)
);
CREATE INDEX alert_events_project ON alert_events (project_id, at DESC);
CREATE INDEX alert_events_rule ON alert_events (rule_id, at DESC);

CREATE TABLE alert_silences (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    matchers jsonb NOT NULL,
    until timestamptz NOT NULL,
    comment text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_silences_project ON alert_silences (project_id, until);

-- One row per notification to one channel. `id` is the webhook-id: the same across every retry.
-- A sender leases a due row (lease_until) before sending it, so replicas never send one twice at once;
-- a sender killed mid-send leaves the lease to run out and the row is sent again, with the same id.
CREATE TABLE alert_outbox (
    id text PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event_id bigint REFERENCES alert_events (id) ON DELETE CASCADE,
    channel jsonb NOT NULL,
    channel_key text NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    delivered_at timestamptz,
    abandoned_at timestamptz,
    last_error text NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_due ON alert_outbox (due_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX alert_outbox_event ON alert_outbox (event_id);

-- A channel (by its key: type and URL) that kept failing is disabled until a rule using it is saved again.
CREATE TABLE alert_channels (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    channel_key text NOT NULL,
    failing_since timestamptz,
    disabled_at timestamptz,
    PRIMARY KEY (project_id, channel_key)
);
