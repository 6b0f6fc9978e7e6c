-- Ingest: a project's own model prices and its score configs.

-- A project's prices come before the built-in table (services/ingest/prices.json); among the prices
-- whose pattern matches a span's model and whose start is not after the span, the newest wins.
CREATE TABLE model_prices (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    model_name text NOT NULL,
    match_pattern text NOT NULL,
    input_price_per_million double precision NOT NULL CHECK (input_price_per_million >= 0),
    output_price_per_million double precision NOT NULL CHECK (output_price_per_million >= 0),
    cached_input_price_per_million double precision CHECK (cached_input_price_per_million >= 0),
    valid_from timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_prices_project ON model_prices (project_id, valid_from DESC);

-- What a score of this name must look like: its data type, and a range or a set of categories.
CREATE TABLE score_configs (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL,
    data_type text NOT NULL CHECK (data_type IN ('numeric', 'boolean', 'categorical')),
    min_value double precision,
    max_value double precision,
    categories text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);
