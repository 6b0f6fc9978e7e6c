-- The prompt registry: prompts, their immutable versions, movable labels and every label move.

-- One row per prompt name; it serialises writers (SELECT … FOR UPDATE) and numbers versions.
CREATE TABLE prompts (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    type text NOT NULL CHECK (type IN ('text', 'chat')),
    last_version integer NOT NULL DEFAULT 0, -- never reused, even after a version is removed
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

-- Immutable once written: a change is a new version.
CREATE TABLE prompt_versions (
    project_id uuid NOT NULL,
    name text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    type text NOT NULL CHECK (type IN ('text', 'chat')),
    prompt jsonb NOT NULL, -- a string (text) or a list of messages and placeholders (chat)
    config jsonb NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    variables text[] NOT NULL DEFAULT '{}',
    commit_message text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT '', -- the public key that wrote it
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name, version),
    FOREIGN KEY (project_id, name) REFERENCES prompts (project_id, name) ON DELETE CASCADE
);

-- A label points at one version (weight 100), or at several with weights (a traffic split).
CREATE TABLE prompt_labels (
    project_id uuid NOT NULL,
    name text NOT NULL,
    label text NOT NULL,
    version integer NOT NULL,
    weight integer NOT NULL CHECK (weight > 0),
    PRIMARY KEY (project_id, name, label, version),
    FOREIGN KEY (project_id, name, version) REFERENCES prompt_versions (project_id, name, version) ON DELETE CASCADE
);
CREATE INDEX prompt_labels_version ON prompt_labels (project_id, name, version);

-- Every label move, as deployment markers: from/to are the main version (highest weight), and
-- from_split/to_split the whole allocation ([{"version": 2, "weight": 90}, …]) for rollback.
CREATE TABLE prompt_label_history (
    id bigserial PRIMARY KEY,
    project_id uuid NOT NULL,
    name text NOT NULL,
    label text NOT NULL,
    from_version integer,
    to_version integer,
    from_split jsonb NOT NULL DEFAULT '[]',
    to_split jsonb NOT NULL DEFAULT '[]',
    moved_by text NOT NULL DEFAULT '',
    moved_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (project_id, name) REFERENCES prompts (project_id, name) ON DELETE CASCADE
);
CREATE INDEX prompt_label_history_prompt ON prompt_label_history (project_id, name, label, id);
