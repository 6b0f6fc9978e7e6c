-- Deciding between versions (wave 2): an app version belongs to its app, costs add up exactly, and
-- a generation's cost is split into its input and output parts.

-- Rollups are keyed by project_name too, so two apps' versions of the same name are two rows. Rows
-- rolled up before this change keep project_name '' (their apps were not told apart then).
ALTER TABLE rollups ADD COLUMN project_name text NOT NULL DEFAULT '';
ALTER TABLE rollups DROP CONSTRAINT rollups_pkey;
ALTER TABLE rollups
    ADD PRIMARY KEY (project_id, width_minutes, bucket, project_name, app_version, prompt_name, prompt_version, model);

-- Exact decimal sums of costs (the aggregator adds integers of 10^-12 USD). A sum stored as a double
-- becomes the decimal of its 15 significant digits, which drops the binary noise it had gathered.
ALTER TABLE rollups ALTER COLUMN cost TYPE numeric USING cost::numeric;
ALTER TABLE rollups ADD COLUMN input_cost numeric NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN output_cost numeric NOT NULL DEFAULT 0;

-- A run's cost in its input and output parts, when the client sent them or ingest priced the span.
ALTER TABLE runs ADD COLUMN input_cost double precision;
ALTER TABLE runs ADD COLUMN output_cost double precision;

-- Which way a score is better: most are better higher; toxicity, say, is better lower.
ALTER TABLE score_configs ADD COLUMN direction text NOT NULL DEFAULT 'higher' CHECK (direction IN ('higher', 'lower'));
