-- Reglament storage, version 1. Times are milliseconds since the Unix epoch (UTC).
-- JSON documents are TEXT. The same schema, numbering and names exist for PostgreSQL.

CREATE TABLE definitions (
    key          TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    hash         TEXT    NOT NULL,
    name         TEXT,
    xml          TEXT    NOT NULL,
    deployed_at  BIGINT  NOT NULL,
    deployed_by  TEXT,
    PRIMARY KEY (key, version)
);

CREATE TABLE instances (
    id              TEXT    PRIMARY KEY,
    definition_key  TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    business_key    TEXT,
    status          TEXT    NOT NULL,
    incident        BIGINT  NOT NULL DEFAULT 0,
    rev             BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    parent_id       TEXT,
    started_at      BIGINT  NOT NULL,
    ended_at        BIGINT,
    deadline        BIGINT,
    history_len     BIGINT  NOT NULL
);
CREATE INDEX instances_definition ON instances (definition_key, status);
CREATE INDEX instances_business_key ON instances (business_key);
CREATE INDEX instances_started ON instances (started_at);

-- The audit history: one row per committed transition, its events as a JSON array.
CREATE TABLE history (
    instance_id  TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    at           BIGINT  NOT NULL,
    events       TEXT    NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

CREATE TABLE tasks (
    id                TEXT    PRIMARY KEY,
    instance_id       TEXT    NOT NULL,
    task_key          BIGINT  NOT NULL,
    definition_key    TEXT    NOT NULL,
    element_id        TEXT    NOT NULL,
    name              TEXT,
    state             TEXT    NOT NULL,
    assignee          TEXT,
    candidate_groups  TEXT    NOT NULL,
    candidate_users   TEXT    NOT NULL,
    due               BIGINT,
    priority          BIGINT,
    created_at        BIGINT  NOT NULL,
    completed_at      BIGINT,
    completed_by      TEXT
);
CREATE INDEX tasks_instance ON tasks (instance_id);
CREATE INDEX tasks_assignee_due ON tasks (assignee, state, due, id);
CREATE INDEX tasks_assignee_created ON tasks (assignee, state, created_at, id);
CREATE INDEX tasks_state_due ON tasks (state, due, id);

-- One row per (task, candidate group): the inbox query walks these in index order.
-- due_sort is the due time, or the largest BIGINT when the task has none.
CREATE TABLE task_groups (
    group_name  TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    due_sort    BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (group_name, task_id)
);
CREATE INDEX task_groups_due ON task_groups (group_name, state, due_sort, task_id);
CREATE INDEX task_groups_created ON task_groups (group_name, state, created_at, task_id);
CREATE INDEX task_groups_task ON task_groups (task_id);

CREATE TABLE timers (
    instance_id  TEXT    NOT NULL,
    timer_key    BIGINT  NOT NULL,
    due          BIGINT  NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    PRIMARY KEY (instance_id, timer_key)
);
CREATE INDEX timers_due ON timers (due);

-- Timer start events of deployed definitions (cron, cycles, dates).
CREATE TABLE start_timers (
    definition_key  TEXT    NOT NULL,
    element_id      TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    due             BIGINT  NOT NULL,
    fired           BIGINT  NOT NULL DEFAULT 0,
    missed          BIGINT  NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     BIGINT,
    PRIMARY KEY (definition_key, element_id)
);
CREATE INDEX start_timers_due ON start_timers (due);

CREATE TABLE subscriptions (
    instance_id      TEXT    NOT NULL,
    sub_key          BIGINT  NOT NULL,
    name             TEXT    NOT NULL,
    correlation_key  TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    PRIMARY KEY (instance_id, sub_key)
);
CREATE INDEX subscriptions_message ON subscriptions (name, correlation_key, created_at);

-- Messages published with a time to live and not yet correlated.
CREATE TABLE messages (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL,
    correlation_key  TEXT    NOT NULL,
    variables        TEXT    NOT NULL,
    expires_at       BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX messages_name ON messages (name, correlation_key, created_at);

-- Built-in jobs (report, registry-update) waiting to run.
CREATE TABLE jobs (
    id           TEXT    PRIMARY KEY,
    instance_id  TEXT    NOT NULL,
    job_key      BIGINT  NOT NULL,
    job_type     TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    due          BIGINT  NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, due);
CREATE INDEX jobs_instance ON jobs (instance_id, job_key);

-- Emails written with the state change that caused them, sent after commit.
CREATE TABLE outbox (
    id           TEXT    PRIMARY KEY,
    instance_id  TEXT    NOT NULL,
    job_key      BIGINT  NOT NULL,
    message_id   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    due          BIGINT  NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    sent_at      BIGINT
);
CREATE INDEX outbox_due ON outbox (state, due);
CREATE INDEX outbox_instance ON outbox (instance_id, job_key);

CREATE TABLE users (
    login       TEXT    PRIMARY KEY,
    name        TEXT,
    email       TEXT    NOT NULL,
    disabled    BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE user_groups (
    login       TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    PRIMARY KEY (login, group_name)
);
CREATE INDEX user_groups_group ON user_groups (group_name);

-- API tokens, stored only as SHA-256 hashes.
CREATE TABLE tokens (
    hash        TEXT    PRIMARY KEY,
    login       TEXT    NOT NULL,
    label       TEXT,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX tokens_login ON tokens (login);

-- The process registry (13 columns of the official form), one row per definition key.
CREATE TABLE registry (
    definition_key  TEXT    PRIMARY KEY,
    fields          TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- Responses of writes sent with an Idempotency-Key, replayed on retry.
CREATE TABLE idempotency (
    login       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    status      BIGINT  NOT NULL,
    body        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (login, key)
);
