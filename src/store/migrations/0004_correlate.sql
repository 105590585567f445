-- Correlate: warning lineages, every version sent, every decision with its cause.
-- Owned by src/correlate/store.rs.

-- Lineages in force (one per hazard and area). The row goes when the warning is lifted.
CREATE TABLE corr_lineage (
    key     TEXT PRIMARY KEY,               -- hazard:area
    state   TEXT NOT NULL,                  -- lifecycle::Lineage as JSON
    updated TEXT NOT NULL
) STRICT;

-- Every CAP message stormbell issued, in order: the published feed reads from here.
CREATE TABLE corr_warning (
    id         INTEGER PRIMARY KEY,
    identifier TEXT    NOT NULL UNIQUE,     -- CAP identifier
    lineage    TEXT    NOT NULL,            -- hazard:area
    version    INTEGER NOT NULL,
    msg_type   TEXT    NOT NULL,            -- Alert | Update | Cancel
    hazard     TEXT    NOT NULL,
    tier       TEXT,                        -- NULL for a Cancel
    sent       TEXT    NOT NULL,
    expires    TEXT,
    restricted INTEGER NOT NULL DEFAULT 0,
    decision   INTEGER NOT NULL,            -- corr_decision.id
    -- The large column last: reading the small ones never walks its overflow pages.
    cap        TEXT    NOT NULL             -- the CAP 1.2 XML exactly as published
) STRICT;
CREATE INDEX corr_warning_lineage ON corr_warning (lineage, version);
CREATE INDEX corr_warning_decision ON corr_warning (decision);

-- Every decision, with the assessment and the observation that caused it.
CREATE TABLE corr_decision (
    id        INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    lineage   TEXT    NOT NULL,
    send      TEXT    NOT NULL,             -- Alert | Update | Cancel
    changes   TEXT    NOT NULL,             -- JSON list of lifecycle::Change
    reason    TEXT    NOT NULL,
    cause     INTEGER,                      -- feed_inbox.id of the observation, when one
    targets   TEXT    NOT NULL              -- the typed Targets event for dispatch, as JSON
) STRICT;
CREATE INDEX corr_decision_lineage ON corr_decision (lineage, id);
