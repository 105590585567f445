-- Broadcast terminals: what each warning version asked them to play, what they reported, their
-- state, and what respond must chase. Owned by src/dispatch/broadcast/jobs.rs.

-- One row per (warning version, route), written in the transaction that records the decision.
-- route: 'platform' (the county emergency-broadcast platform, EBD/EBM) or 'icecast' (IP
-- speakers pulling a mount).
CREATE TABLE broadcast_job (
    id          INTEGER PRIMARY KEY,
    decision    INTEGER NOT NULL,            -- corr_decision.id
    lineage     TEXT    NOT NULL,            -- hazard:area
    version     INTEGER NOT NULL,
    send        TEXT    NOT NULL,            -- Alert | Update | Cancel
    hazard      TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    route       TEXT    NOT NULL,            -- platform | icecast
    title       TEXT    NOT NULL,
    script      TEXT    NOT NULL,            -- what the loudspeaker says
    areas       TEXT    NOT NULL,            -- JSON array of 12-digit village codes
    state       TEXT    NOT NULL,            -- queued | sent | done | failed | superseded | skipped
    ebm_id      TEXT,                        -- platform: this broadcast's EBMID
    related     TEXT,                        -- platform: the EBMID it replaces or stops
    audio       TEXT,                        -- SHA-256 of the MP3 that went out
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  TEXT    NOT NULL,            -- UTC RFC 3339: next send or poll
    deadline    TEXT    NOT NULL,            -- terminals must confirm play by then
    alarmed     INTEGER NOT NULL DEFAULT 0,  -- 1: its unreachable/unconfirmed alarm is raised
    result      TEXT,                        -- the platform's last words
    coverage    REAL,                        -- percent, as the platform reports it
    last_error  TEXT,
    created     TEXT    NOT NULL,
    updated     TEXT    NOT NULL
) STRICT;
CREATE UNIQUE INDEX broadcast_job_key ON broadcast_job (decision, route);
CREATE INDEX broadcast_job_ready ON broadcast_job (route, state, not_before);
CREATE INDEX broadcast_job_lineage ON broadcast_job (lineage, route, version);

-- Each terminal a job must reach.
CREATE TABLE broadcast_target (
    job      INTEGER NOT NULL,               -- broadcast_job.id
    terminal TEXT    NOT NULL,               -- registry terminal id (EBRID)
    village  TEXT    NOT NULL,
    state    TEXT    NOT NULL,               -- waiting | playing | played | failed | unconfirmed
    detail   TEXT,
    updated  TEXT    NOT NULL,
    PRIMARY KEY (job, terminal)
) STRICT;
CREATE INDEX broadcast_target_terminal ON broadcast_target (terminal);

-- Terminal state as the platform last reported it, and what each last played.
CREATE TABLE broadcast_terminal (
    id          TEXT PRIMARY KEY,
    online      INTEGER,                     -- NULL: never reported
    state_desc  TEXT,
    seen        TEXT,                        -- when it was last reported on
    played_job  INTEGER,
    played_at   TEXT
) STRICT;

-- The link to each route: the last heartbeat and its verdict.
CREATE TABLE broadcast_link (
    route      TEXT PRIMARY KEY,
    ok         INTEGER NOT NULL,
    last_ok    TEXT,
    last_error TEXT,
    checked    TEXT NOT NULL
) STRICT;

-- What respond must chase (a silent terminal is like a silent village head): a terminal that
-- did not confirm play by the deadline or failed, a broadcast the platform refused, a route
-- that could not be reached. Consumed by respond.
CREATE TABLE broadcast_alarm (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    job      INTEGER NOT NULL,
    lineage  TEXT    NOT NULL,
    terminal TEXT,                           -- NULL: the whole job
    village  TEXT,
    kind     TEXT    NOT NULL,               -- unconfirmed | failed | refused | unreachable | no_route
    detail   TEXT    NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX broadcast_alarm_once ON broadcast_alarm (job, ifnull(terminal, ''), kind);
