-- Datasets: named sets of items (input, expected output, metadata) that versions run offline.
CREATE TABLE datasets (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

-- Items are versioned: an edit adds a version and keeps the old one, so a run pins what it ran.
CREATE TABLE dataset_items (
    project_id uuid NOT NULL,
    dataset text NOT NULL,
    id text NOT NULL,
    version integer NOT NULL,
    input jsonb NOT NULL,
    expected_output jsonb,
    metadata jsonb NOT NULL DEFAULT '{}',
    source_trace_id bytea,  -- the stored run it was made from, if any
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, dataset, id, version),
    FOREIGN KEY (project_id, dataset) REFERENCES datasets (project_id, name) ON DELETE CASCADE
);

-- A stored span that ran an item (it carried vane.dataset.name, .item_id and .item_version): the
-- aggregator links it in the transaction that stores it. Its figures are its trace's (trace_runs)
-- and its scores those of the trace or of this span.
CREATE TABLE dataset_runs (
    project_id uuid NOT NULL,
    dataset text NOT NULL,
    item_id text NOT NULL,
    item_version integer NOT NULL,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    project_name text NOT NULL,
    app_version text NOT NULL,
    start_time timestamptz NOT NULL,
    output text NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, dataset, app_version, item_id, trace_id, span_id)
);
CREATE INDEX dataset_runs_trace ON dataset_runs (project_id, trace_id);
