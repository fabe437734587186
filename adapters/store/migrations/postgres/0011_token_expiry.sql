-- Reglament storage, version 11: API tokens with an expiry (issue 19).
-- The same schema, numbering and names exist for both backends.

-- A token may carry an expiry (milliseconds since the epoch, UTC); NULL: it never expires.
-- Lookups refuse a token whose expiry has passed; the row stays until revoked.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
