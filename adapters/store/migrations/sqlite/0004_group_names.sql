-- Reglament storage, version 4: the names of groups as officials read them («Приёмная» for
-- `reception`), from the directory's `[groups]` table; pages and emails show them instead of
-- the ids that models and rules use. Replaced with the directory; the same schema, numbering and
-- names exist for both backends.
CREATE TABLE group_names (
    id    TEXT    PRIMARY KEY,
    name  TEXT    NOT NULL
);
