-- The web stage's secrets (the key of the check-in forms' CSRF tokens), made once at first use
-- and kept across restarts so a page opened before a restart can still be sent. Owned by
-- src/web/.
CREATE TABLE web_secret (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
