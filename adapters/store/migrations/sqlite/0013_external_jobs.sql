-- Reglament storage, version 13: jobs for external workers on the /v2 job API (issue 17).
-- The same schema, numbering and names exist for both backends.

-- `retries`: failures a worker may still report before the job becomes an incident (from
-- zeebe:taskDefinition retries, default 3). `activation_key`: the jobKey handed to the worker
-- that holds the job now (a new one on every activation, so a worker whose lease expired cannot
-- complete a job another worker took); NULL while nobody holds it. `lease_owner` is the worker's
-- name, `lease_until` its deadline.
ALTER TABLE jobs ADD COLUMN retries BIGINT NOT NULL DEFAULT 3;
ALTER TABLE jobs ADD COLUMN activation_key TEXT;
CREATE INDEX jobs_activation ON jobs (activation_key);
CREATE INDEX jobs_type_due ON jobs (job_type, state, due);
