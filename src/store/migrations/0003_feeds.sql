-- Feeds: what each feed has seen and handed on, and how it is doing. Owned by src/feeds/state.rs.

-- One row per configured feed: validators for conditional GET, and health.
CREATE TABLE feed_state (
    feed         TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    etag         TEXT,                          -- for If-None-Match
    last_modified TEXT,                         -- for If-Modified-Since
    last_attempt TEXT,                          -- RFC 3339 times with offset
    last_success TEXT,
    last_error   TEXT,
    last_error_at TEXT,
    failures     INTEGER NOT NULL DEFAULT 0,    -- consecutive failed polls
    polls        INTEGER NOT NULL DEFAULT 0,
    items        INTEGER NOT NULL DEFAULT 0,    -- items handed on, all time
    gap_since    TEXT                           -- when the gap alarm was raised; NULL if none
) STRICT;

-- Keys of items (and followed links) a feed has already handed on.
CREATE TABLE feed_seen (
    feed       TEXT NOT NULL,
    key        TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (feed, key)
) STRICT, WITHOUT ROWID;

-- CAP documents exactly as received, for the after-action review.
CREATE TABLE feed_doc (
    digest   TEXT PRIMARY KEY,                  -- SHA-256 of body
    feed     TEXT NOT NULL,
    url      TEXT NOT NULL,
    received TEXT NOT NULL,
    body     BLOB NOT NULL
) STRICT;

-- Every upstream CAP alert by the triple that names it, with its lineage: the whole store
-- dedupes alerts across feeds with this key.
CREATE TABLE feed_cap (
    sender     TEXT NOT NULL,
    identifier TEXT NOT NULL,
    sent       TEXT NOT NULL,
    msg_type   TEXT NOT NULL,
    root       TEXT NOT NULL,                   -- 'sender,identifier,sent' of the lineage's first alert
    feed       TEXT NOT NULL,
    received   TEXT NOT NULL,
    PRIMARY KEY (sender, identifier, sent)
) STRICT, WITHOUT ROWID;
CREATE INDEX feed_cap_root ON feed_cap (root);

-- The durable hand-off to the correlate stage: an observation is written here in the same
-- transaction that marks it seen, and stays pending until the consumer marks it consumed in
-- its own transaction. A restart re-delivers what is pending: nothing missed, nothing twice.
CREATE TABLE feed_inbox (
    id          INTEGER PRIMARY KEY,
    feed        TEXT NOT NULL,
    key         TEXT NOT NULL,
    received    TEXT NOT NULL,
    observation TEXT NOT NULL,                  -- JSON
    consumed    TEXT
) STRICT;
CREATE INDEX feed_inbox_pending ON feed_inbox (id) WHERE consumed IS NULL;
