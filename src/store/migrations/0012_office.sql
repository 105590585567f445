-- The duty office's users and their sessions. Owned by src/web/auth.rs.

-- Office users: a name and an argon2id hash (PHC string). Never the password.
CREATE TABLE web_user (
    name     TEXT PRIMARY KEY,
    hash     TEXT    NOT NULL,               -- $argon2id$v=19$m=...,t=...,p=...$salt$hash
    role     TEXT    NOT NULL,               -- officer | viewer
    created  TEXT    NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Signed-in sessions. The cookie holds 128 random bits; only their SHA-256 is stored, so a
-- copy of the database does not sign anyone in.
CREATE TABLE web_session (
    id       TEXT PRIMARY KEY,               -- hex SHA-256 of the cookie value
    user     TEXT    NOT NULL,
    created  TEXT    NOT NULL,
    expires  TEXT    NOT NULL,               -- UTC RFC 3339
    ended    TEXT                            -- signed out
) STRICT;
CREATE INDEX web_session_user ON web_session (user);
