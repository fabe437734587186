-- Reglament storage, version 5: business keys (request numbers) taken by instances of
-- processes whose model says `reglament:settings uniqueBusinessKey="true"`. The primary key
-- makes a second start with the same number lose on every node; the key stays taken when the
-- instance ends or is cancelled (a number is used once). The same schema, numbering and names
-- exist for both backends.
CREATE TABLE unique_business_keys (
    definition_key  TEXT    NOT NULL,
    business_key    TEXT    NOT NULL,
    instance_id     TEXT    NOT NULL,
    PRIMARY KEY (definition_key, business_key)
);
