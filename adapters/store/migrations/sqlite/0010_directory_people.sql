-- Reglament storage, version 10: which users came from the organisation directory (issue 19).
-- The same schema, numbering and names exist for both backends.

-- 1 for a person the directory listed when it was last loaded. Loading a directory that no
-- longer lists such a person disables them (their tokens and sessions stop); users created
-- with `reglament users add` or the API stay as they are. Before this column, the people of a
-- loaded directory are recognised as its members, heads and role holders.
ALTER TABLE users ADD COLUMN in_directory INTEGER NOT NULL DEFAULT 0;
UPDATE users SET in_directory = 1 WHERE login IN (
    SELECT login FROM unit_members UNION SELECT head_login FROM units WHERE head_login IS NOT NULL
    UNION SELECT login FROM roles
);
