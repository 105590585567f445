-- Secrets of the dispatch stage, made once per database and kept across restarts: the one a
-- gateway's delivery reports must carry (`kannel-dlr`), so that a caller who can reach the
-- listener but was never given the URL cannot mark messages delivered or failed. Owned by
-- src/dispatch/outbox/.
CREATE TABLE dispatch_secret (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
