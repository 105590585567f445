-- Each SMS centre bind as the SMPP channel last knew it, for `stormbell status` and the office:
-- a county needs to see at 3 a.m. that its only carrier link is down. Owned by
-- src/dispatch/outbox.rs.
CREATE TABLE dispatch_bind (
    account TEXT    NOT NULL,
    slot    INTEGER NOT NULL,                -- 0 … binds-1
    state   TEXT    NOT NULL,                -- bound | down | stopped
    since   TEXT    NOT NULL,                -- UTC RFC 3339
    detail  TEXT,                            -- the SMSC's address, or why it is down
    PRIMARY KEY (account, slot)
) STRICT;
