-- Reglament storage, version 3: signing in to the web pages (issue 14).
-- The same schema, numbering and names exist for both backends.

-- Sign-in passwords: argon2id PHC strings (`$argon2id$v=19$...`), never the password.
CREATE TABLE user_passwords (
    login       TEXT    PRIMARY KEY,
    hash        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- Browser sessions. `token_hash` is the SHA-256 (hex) of the cookie's value, so whoever reads
-- the database cannot take a session over. `provider` names how the person signed in
-- (`password`; an external identity provider later), `csrf` is the token every state-changing
-- form of the session carries.
CREATE TABLE web_sessions (
    token_hash  TEXT    PRIMARY KEY,
    login       TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    csrf        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX web_sessions_login ON web_sessions (login);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Failed sign-ins per key (`login:LOGIN`, `addr:IP`), for slowing down password guessing; a
-- successful sign-in clears its login's row.
CREATE TABLE sign_in_failures (
    key         TEXT    PRIMARY KEY,
    failures    BIGINT  NOT NULL,
    last_at     BIGINT  NOT NULL
);
