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

-- Request numbers found by any part of three characters or more: a trigram index (FTS5) of
-- the business keys, kept by a trigger. Instances are never deleted and their business key never
-- changes, so inserts are all it follows.
CREATE VIRTUAL TABLE instance_numbers USING fts5(business_key, instance_id UNINDEXED, tokenize = 'trigram');
INSERT INTO instance_numbers (business_key, instance_id)
    SELECT business_key, id FROM instances WHERE business_key IS NOT NULL;
CREATE TRIGGER instances_number AFTER INSERT ON instances WHEN new.business_key IS NOT NULL
BEGIN
    INSERT INTO instance_numbers (business_key, instance_id) VALUES (new.business_key, new.id);
END;
