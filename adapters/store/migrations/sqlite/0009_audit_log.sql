-- Reglament storage, version 9: the audit log of human acts (issue 19).
-- The same schema, numbering and names exist for both backends.

-- One row per act of a person: who (`actor`, a login), when (`at`, ms), from where (`address`,
-- the client's IP), what (`action`, e.g. `task.complete`), on what (`target`, and the instance
-- when there is one) and with what (`details`, JSON: submitted values, reasons). Append-only:
-- the triggers refuse every UPDATE and DELETE, whoever asks.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT,
    instance_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_instance ON audit_log (instance_id, seq) WHERE instance_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: rows are never changed');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: rows are never deleted');
END;
