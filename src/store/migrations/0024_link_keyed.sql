-- Check-in links are found by their token (a tap) or by the message that carries them; a red
-- warning for 100,000 persons writes 100,000 of them in the decision's transaction. Keyed by
-- the token itself (no rowid table beside the token's index) and without the (person,
-- lineage, version) index nothing ever read, each link costs two B-tree inserts, not four.
CREATE TABLE dispatch_link_new (
    token    TEXT    NOT NULL PRIMARY KEY,   -- 128 random bits, base64url
    message  INTEGER NOT NULL,               -- dispatch_message.id that carries it
    decision INTEGER NOT NULL,
    lineage  TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    person   TEXT    NOT NULL,
    created  TEXT    NOT NULL,
    expires  TEXT    NOT NULL                -- refused after this (UTC RFC 3339)
) STRICT, WITHOUT ROWID;
INSERT INTO dispatch_link_new (token, message, decision, lineage, version, person, created, expires)
SELECT token, message, decision, lineage, version, person, created, expires FROM dispatch_link;
DROP TABLE dispatch_link;
ALTER TABLE dispatch_link_new RENAME TO dispatch_link;
CREATE UNIQUE INDEX dispatch_link_message ON dispatch_link (message);
