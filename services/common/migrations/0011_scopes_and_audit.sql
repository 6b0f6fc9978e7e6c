-- Scoped keys: a key holds some of ingest, read, write, admin. Keys made before scopes existed
-- (and the VANE_INIT_* key, which start-up creates with the column's default) hold all four.
ALTER TABLE api_keys
    ADD COLUMN name text NOT NULL DEFAULT '',
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{ingest,read,write,admin}',
    ADD CONSTRAINT api_keys_scopes_known CHECK (
        cardinality(scopes) > 0 AND scopes <@ '{ingest,read,write,admin}'::text[]
    );
UPDATE api_keys SET name = note WHERE name = '';

-- The audit log: who (which public key) did what to which thing of a project, and when.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_project ON audit_log (project_id, id DESC);

-- PII redaction at ingest: a project's built-in detectors and its own RE2 patterns ({name, regex}).
CREATE TABLE redaction_rules (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    detectors text[] NOT NULL DEFAULT '{}',
    patterns jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Quotas an operator sets per project (`vane quotas set`); NULL: the environment's default, 0: unlimited.
CREATE TABLE project_quotas (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    spans_per_second integer CHECK (spans_per_second >= 0),
    bytes_per_day bigint CHECK (bytes_per_day >= 0),
    judge_calls_per_second integer CHECK (judge_calls_per_second >= 0)
);
