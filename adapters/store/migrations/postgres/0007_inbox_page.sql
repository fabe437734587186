-- Reglament storage, version 7: the inbox page with a million open tasks (issue 14).
-- The same schema, numbering and names exist for both backends.

-- Each view of the inbox walks one index in the page's order — due time, tasks without one
-- last, then id — and stops after a page, so a page costs the same at any size: «Мои задачи»
-- by assignee, «Задачи моих групп» among the unassigned (PostgreSQL does not take
-- `assignee IS NULL` as fixing the first column of the first index), each also by process
-- when one is chosen. The expression is written exactly as the queries write it.
CREATE INDEX tasks_open_assignee_due ON tasks (assignee, COALESCE(due, 9223372036854775807), id)
    WHERE state = 'open';
CREATE INDEX tasks_open_assignee_definition_due
    ON tasks (assignee, definition_key, COALESCE(due, 9223372036854775807), id) WHERE state = 'open';
CREATE INDEX tasks_open_free_due ON tasks (COALESCE(due, 9223372036854775807), id)
    WHERE state = 'open' AND assignee IS NULL;
CREATE INDEX tasks_open_free_definition_due ON tasks (definition_key, COALESCE(due, 9223372036854775807), id)
    WHERE state = 'open' AND assignee IS NULL;

-- Request numbers found by any part of three characters or more: a trigram index of the
-- lower-cased business keys. pg_trgm ships with PostgreSQL and is a trusted extension, so the
-- database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX instances_number_trgm ON instances USING gin (LOWER(business_key) gin_trgm_ops);
