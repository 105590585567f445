-- Dispatch: the outbox, its parts at the SMSC, and what phones sent back.
-- Owned by src/dispatch/outbox.rs.

-- One row per (warning version, person, channel), written in the same transaction as the
-- decision (corr_decision) that caused it.
CREATE TABLE dispatch_message (
    id          INTEGER PRIMARY KEY,
    decision    INTEGER NOT NULL,            -- corr_decision.id: the warning version
    lineage     TEXT    NOT NULL,            -- hazard:area
    version     INTEGER NOT NULL,
    send        TEXT    NOT NULL,            -- Alert | Update | Cancel
    hazard      TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    raises      INTEGER NOT NULL,            -- 1: raises the danger for someone (never held back)
    person      TEXT    NOT NULL,            -- registry person id
    channel     TEXT    NOT NULL,            -- sms
    address     TEXT    NOT NULL,            -- normalised number (or what was given, if invalid)
    priority    INTEGER NOT NULL,            -- higher first
    state       TEXT    NOT NULL,            -- queued | submitting | accepted | delivered | failed
                                             -- | expired | superseded | merged | skipped
    merged_into INTEGER,                     -- the message that carried this one's words
    text        TEXT    NOT NULL,            -- this warning's own text, rendered at enqueue
    segments    INTEGER NOT NULL,
    sent_text   TEXT,                        -- what the last claim sent (merged texts differ)
    sent_segments INTEGER,
    words       TEXT    NOT NULL,            -- the warning's words (JSON) for merged texts
    attempts    INTEGER NOT NULL DEFAULT 0,
    uncertain   INTEGER NOT NULL DEFAULT 0,  -- sends with no verdict (possible duplicates)
    not_before  TEXT    NOT NULL,            -- UTC RFC 3339: not claimed before
    account     TEXT,                        -- SMSC account used last
    last_error  TEXT,
    created     TEXT    NOT NULL,
    updated     TEXT    NOT NULL
) STRICT;
CREATE UNIQUE INDEX dispatch_message_key ON dispatch_message (decision, person, channel);
CREATE INDEX dispatch_message_ready ON dispatch_message (channel, state, priority DESC, id);
-- Also in the order a claim merges a person's queued rows (or the planner walks every queued
-- row by priority instead).
CREATE INDEX dispatch_message_person ON dispatch_message (channel, person, state, priority DESC, id);
CREATE INDEX dispatch_message_lineage ON dispatch_message (lineage, person);
CREATE INDEX dispatch_message_age ON dispatch_message (channel, state, created);

-- Each submit_sm of a message (one per segment), with the SMSC's id and the receipt.
CREATE TABLE dispatch_part (
    message  INTEGER NOT NULL,               -- dispatch_message.id
    part     INTEGER NOT NULL,               -- 1-based
    total    INTEGER NOT NULL,
    account  TEXT    NOT NULL,
    smsc_id  TEXT    NOT NULL,
    state    TEXT    NOT NULL,               -- accepted | delivered | failed
    receipt  TEXT,                           -- the receipt's stat word
    at       TEXT    NOT NULL,
    PRIMARY KEY (message, part)
) STRICT;
CREATE INDEX dispatch_part_smsc ON dispatch_part (account, smsc_id);

-- What came back that is not a receipt for a known part: replies from phones (for the respond
-- stage) and receipts for ids nobody sent (kept for a human). A receipt can overtake the
-- record of its own submit_sm_resp: it waits here and is applied when the part is recorded.
CREATE TABLE dispatch_inbound (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    kind     TEXT    NOT NULL,               -- reply | orphan_receipt
    account  TEXT    NOT NULL,
    source   TEXT    NOT NULL,
    dest     TEXT    NOT NULL,
    text     TEXT    NOT NULL,
    smsc_id  TEXT,                           -- a receipt's message id
    stat     TEXT,                           -- a receipt's stat word
    consumed INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX dispatch_inbound_receipt ON dispatch_inbound (account, smsc_id);
