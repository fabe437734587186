-- Reglament storage, version 8: who started an instance (issue 19, visibility rules).
-- The same schema, numbering and names exist for both backends.

-- The login that started the instance over the API or a page; NULL for instances started by
-- a timer, a message, a call activity, or before this column existed. Written once, when the
-- instance is inserted; the batch's updates never touch it. A person sees the instances they
-- started.
ALTER TABLE instances ADD COLUMN started_by TEXT;
