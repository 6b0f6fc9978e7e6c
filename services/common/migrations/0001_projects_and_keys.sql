-- Tenancy: a project is the unit of isolation; a key pair belongs to one project.
CREATE TABLE projects (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of the secret is stored: secrets are 32 random bytes, so SHA-256 suffices
-- (a slow password hash guards low-entropy secrets, which these are not).
CREATE TABLE api_keys (
    public_key text PRIMARY KEY,
    secret_hash text NOT NULL UNIQUE,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project_id);
