-- The drill (`stormbell replay`): how far each scenario's replay has run, so that a replay
-- killed mid-storm resumes where it was; the simulated network's receipts still to come; and
-- what each simulated responder will do and has done, so that nobody answers twice across a
-- restart. Owned by src/drill/. Times here are Unix seconds of simulated time.
CREATE TABLE drill_run (
    scenario TEXT PRIMARY KEY,               -- the scenario's name
    started  TEXT NOT NULL,                  -- simulated start (UTC RFC 3339)
    reached  TEXT NOT NULL,                  -- simulated time of the last completed turn
    finished TEXT,                           -- set when the replay reached the scenario's end
    lifts    INTEGER NOT NULL DEFAULT 0      -- corr_decision.id up to which lifts are planned for
) STRICT;

-- A receipt the simulated network owes: one per part it accepted.
CREATE TABLE drill_receipt (
    smsc_id TEXT PRIMARY KEY,
    due     INTEGER NOT NULL,
    stat    TEXT NOT NULL                    -- DELIVRD | UNDELIV
) STRICT;
CREATE INDEX drill_receipt_due ON drill_receipt (due);

-- What a simulated person does for a warning, planned when its text first reaches them.
CREATE TABLE drill_plan (
    person  TEXT NOT NULL,
    lineage TEXT NOT NULL,
    step    TEXT NOT NULL,                   -- ack:<decision> | post | moved1 … | returned
    due     INTEGER NOT NULL,
    target  TEXT NOT NULL,                   -- the village or site they answer for
    people  INTEGER,                         -- moved / returned: how many
    refused INTEGER,                         -- the last moved report: how many refuse
    sms     INTEGER NOT NULL,                -- 1: by SMS reply; 0: by the check-in link
    done    INTEGER,                         -- when it was done (or skipped)
    channel TEXT,                            -- sms | link | skipped
    text    TEXT,                            -- what they sent or tapped
    PRIMARY KEY (person, lineage, step)
) STRICT;
CREATE INDEX drill_plan_due ON drill_plan (due) WHERE done IS NULL;
CREATE INDEX drill_plan_place ON drill_plan (lineage, target, step);
