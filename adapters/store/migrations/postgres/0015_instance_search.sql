-- Reglament storage, version 15: the instance search (GET /api/process-instances).
-- The same schema, numbering and names exist for both backends.

-- Newest first, tie-broken by id: the order and keyset cursor of the search (it serves every
-- query of instances_started too, which it replaces).
CREATE INDEX instances_search_started ON instances (started_at, id);
-- One process, and one process in one state, newest first (the second replaces
-- instances_definition, its prefix).
CREATE INDEX instances_search_process ON instances (definition_key, started_at, id);
CREATE INDEX instances_search_process_state ON instances (definition_key, status, started_at, id);
-- Running instances by deadline (overdue=true).
CREATE INDEX instances_search_deadline ON instances (deadline) WHERE status = 'active';
DROP INDEX instances_started;
DROP INDEX instances_definition;
