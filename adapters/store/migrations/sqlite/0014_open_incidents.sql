-- Reglament storage, version 14: open incidents across instances (GET /api/incidents).
-- The same schema, numbering and names exist for both backends.

-- Only the few active instances that stand on an incident, in id order (the list's cursor).
CREATE INDEX instances_open_incidents ON instances (id) WHERE incident = 1 AND status = 'active';
