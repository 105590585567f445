-- Respond: who was called for each warning, the escalation steps that chase silence, what
-- people answered, and the evacuation they reported. Owned by src/respond/.

-- One row per (warning version, person, place answered for): written in the decision's
-- transaction for an Alert or a raise (a routine update does not ask again).
CREATE TABLE respond_call (
    id        INTEGER PRIMARY KEY,
    decision  INTEGER NOT NULL,
    lineage   TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    hazard    TEXT    NOT NULL,
    tier      TEXT    NOT NULL,
    person    TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    mobile    TEXT    NOT NULL,
    level     TEXT    NOT NULL,              -- county | town | village | group | site
    role      TEXT    NOT NULL,
    target    TEXT    NOT NULL,              -- the village or site they answer for
    deputy    TEXT,                          -- their A/B deputy (person id)
    words     TEXT    NOT NULL,              -- the warning's words (JSON) for chase texts
    called    TEXT    NOT NULL,              -- decision time (UTC RFC 3339)
    state     TEXT    NOT NULL,              -- open | answered | covered | superseded | lifted | silent
    answered  TEXT,                          -- when (first answer)
    answer    INTEGER,                       -- respond_answer.id
    UNIQUE (decision, person, target)
) STRICT;
CREATE INDEX respond_call_person ON respond_call (person, lineage, state);
CREATE INDEX respond_call_place ON respond_call (lineage, target, state);
CREATE INDEX respond_call_open ON respond_call (lineage, state, person);
CREATE INDEX respond_call_silent ON respond_call (called) WHERE state = 'silent';

-- The ladder for each call, scheduled when the call is made: each fires once, in its own
-- transaction with what it does, and is cancelled the moment someone answers.
CREATE TABLE respond_step (
    id      INTEGER PRIMARY KEY,
    call    INTEGER NOT NULL,                -- respond_call.id
    step    INTEGER NOT NULL,                -- 1, 2, … in order
    due     TEXT    NOT NULL,
    action  TEXT    NOT NULL,                -- resend | deputy | town | county | silent
    state   TEXT    NOT NULL,                -- pending | fired | cancelled
    fired   TEXT,
    detail  TEXT,                            -- what it did (messages queued, or why not)
    UNIQUE (call, step)
) STRICT;
CREATE INDEX respond_step_due ON respond_step (state, due);

-- What people answered, by SMS reply or check-in link, word for word.
CREATE TABLE respond_answer (
    id        INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    channel   TEXT    NOT NULL,              -- sms | link
    inbound   INTEGER UNIQUE,                -- dispatch_inbound.id of an SMS reply
    address   TEXT,                          -- the number it came from
    person    TEXT,                          -- NULL: a number no message went to
    lineage   TEXT,                          -- the warning it answers (their latest)
    version   INTEGER,
    kind      TEXT    NOT NULL,              -- ack | post | moved | help | unknown
    people    INTEGER,                       -- moved: how many so far
    shelter   TEXT,
    note      TEXT,
    text      TEXT    NOT NULL,
    repeat_of INTEGER,                       -- the same answer again (an SMSC redelivery, a second tap)
    handled   TEXT                           -- when a human dealt with it (help, unknown)
) STRICT;
CREATE INDEX respond_answer_person ON respond_answer (person, lineage);
CREATE INDEX respond_answer_address ON respond_answer (address, at);

-- The latest evacuation report per (warning, place, person): a report is a running total, so a
-- repeat never counts twice.
CREATE TABLE respond_evacuation (
    lineage TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    person  TEXT    NOT NULL,
    people  INTEGER NOT NULL,
    shelter TEXT,
    refused INTEGER,                         -- people who refuse or cannot move (link form)
    at      TEXT    NOT NULL,
    answer  INTEGER NOT NULL,
    PRIMARY KEY (lineage, target, person)
) STRICT;

-- How far respond has read another stage's queue.
CREATE TABLE respond_cursor (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) STRICT;
