-- The county registry, with its history. Owned by src/registry/db.rs.
--
-- Each import of a registry folder is one row of reg_import. Records of every kind (village,
-- site, threshold, shelter, terminal, person, duty, …) live in reg_record as JSON, one row per
-- version: valid_from is the import that brought this version, valid_to the import that
-- replaced or removed it (NULL while current). Nothing is ever deleted, so the registry as it
-- stood after any import — who answered for a village on any past date — can be rebuilt.
CREATE TABLE reg_import (
    id      INTEGER PRIMARY KEY,
    at      TEXT    NOT NULL,   -- RFC 3339 with offset
    source  TEXT    NOT NULL,   -- the folder imported
    digest  TEXT    NOT NULL,   -- SHA-256 over the files read
    summary TEXT    NOT NULL    -- JSON: counts and changes
) STRICT;

CREATE TABLE reg_record (
    kind       TEXT    NOT NULL,                          -- 'village', 'person', 'duty', …
    key        TEXT    NOT NULL,                          -- identity within the kind
    ref        TEXT,                                      -- what it belongs to (a duty's target, …)
    data       TEXT    NOT NULL,                          -- the record as JSON
    valid_from INTEGER NOT NULL REFERENCES reg_import(id),
    valid_to   INTEGER          REFERENCES reg_import(id)
) STRICT;

CREATE INDEX reg_record_current ON reg_record (kind, key) WHERE valid_to IS NULL;
CREATE INDEX reg_record_ref ON reg_record (kind, ref, valid_from);
