-- The audit trail: append-only and hash-chained, for the after-action review.
-- Owned by src/store/audit.rs. Each row carries the SHA-256 of the row before it; the schema
-- refuses UPDATE and DELETE. Someone with raw access to the file can drop the triggers: a row
-- changed in place is then evident (`stormbell audit verify` names the first bad row), but a
-- rewrite that recomputes every later hash, or rows cut off the end, are not, by the chain
-- alone. Those are caught against a head kept outside the database: the signed checkpoints
-- (src/store/checkpoint.rs) and the head written in the duty log (`audit verify --head`).
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,   -- 1, 2, 3, … without gaps
    at        TEXT    NOT NULL,      -- RFC 3339 with offset, e.g. 2019-08-09T18:30:00+08:00
    actor     TEXT    NOT NULL,      -- who or what acted: 'system', 'feeds', 'officer:…'
    kind      TEXT    NOT NULL,      -- what happened, dotted: 'warning.issued', 'sms.accepted'
    subject   TEXT    NOT NULL,      -- what it concerns: a warning id, a person id, a file
    detail    TEXT    NOT NULL,      -- JSON object with the particulars
    prev_hash TEXT    NOT NULL,      -- hash of the previous row (64 zeros for the first)
    hash      TEXT    NOT NULL       -- SHA-256 over prev_hash and this row's fields
) STRICT;

CREATE TRIGGER audit_refuse_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_refuse_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: DELETE refused');
END;
