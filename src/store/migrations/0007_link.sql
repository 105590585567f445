-- Personal check-in links: one unguessable token per (warning version, person), made with the
-- SMS that carries it. Owned by src/dispatch/link.rs; respond reads it through `link::lookup`.
CREATE TABLE dispatch_link (
    token    TEXT PRIMARY KEY,               -- 128 random bits, base64url
    message  INTEGER NOT NULL,               -- dispatch_message.id that carries it
    decision INTEGER NOT NULL,
    lineage  TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    person   TEXT    NOT NULL,
    created  TEXT    NOT NULL,
    expires  TEXT    NOT NULL                -- refused after this (UTC RFC 3339)
) STRICT;
CREATE UNIQUE INDEX dispatch_link_message ON dispatch_link (message);
CREATE INDEX dispatch_link_person ON dispatch_link (person, lineage, version);
