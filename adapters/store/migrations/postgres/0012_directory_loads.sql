-- Reglament storage, version 12: every load of the organisation directory (issue 19).
-- The same schema, numbering and names exist for both backends.

-- One row per load (first start from directory.toml, PUT /api/directory). The directory file
-- seeds a database only while this table is empty and no units or roles exist, so a directory
-- an admin emptied stays empty after a restart.
CREATE TABLE directory_loads (
    loaded_at BIGINT NOT NULL,
    people    INTEGER NOT NULL,
    units     INTEGER NOT NULL
);
INSERT INTO directory_loads (loaded_at, people, units)
    SELECT 0, (SELECT COUNT(*) FROM users WHERE in_directory = 1), (SELECT COUNT(*) FROM units)
    WHERE EXISTS (SELECT 1 FROM units) OR EXISTS (SELECT 1 FROM roles);
