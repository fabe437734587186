-- Reglament storage, version 2: the organisation directory that email recipient rules read
-- (`group:`, `unit:`, `head-of:`, `role:`; docs/reglament-namespace.md, "Email tasks").
-- Users and their groups are in `users` / `user_groups` (version 1). The admin manages this
-- data; the same schema, numbering and names exist for both backends.

-- Units (подразделения) form a tree; `head_login` is the unit's head (руководитель).
CREATE TABLE units (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    head_login  TEXT,
    parent_id   TEXT
);
CREATE INDEX units_parent ON units (parent_id);
CREATE INDEX units_head ON units (head_login);

-- Who works in which unit (a person may belong to several).
CREATE TABLE unit_members (
    login    TEXT    NOT NULL,
    unit_id  TEXT    NOT NULL,
    PRIMARY KEY (login, unit_id)
);
CREATE INDEX unit_members_unit ON unit_members (unit_id);

-- Named roles held by people (e.g. `cur-contact`, `deputy-minister`, `working-group`).
CREATE TABLE roles (
    role   TEXT    NOT NULL,
    login  TEXT    NOT NULL,
    PRIMARY KEY (role, login)
);
CREATE INDEX roles_login ON roles (login);

-- The few instances stopped by an incident, for the /metrics gauge without a table scan.
CREATE INDEX instances_incident ON instances (status) WHERE incident = 1;
