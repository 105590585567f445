-- Return home (解除转移) and full shelters. Owned by src/respond/.

-- After a warning is lifted, each person's running total of people back home, beside the
-- people they moved.
ALTER TABLE respond_evacuation ADD COLUMN returned INTEGER;
-- The office's board reads each warning's answers by kind (who is at their post).
CREATE INDEX respond_answer_lineage ON respond_answer (lineage, kind, person);
-- A shelter's load is read on every report that names it.
CREATE INDEX respond_evacuation_shelter ON respond_evacuation (shelter);

-- Shelters reported over 90 % of capacity, alerted once per crossing: the row goes when the
-- load falls back, so crossing again alerts again.
CREATE TABLE respond_shelter_alert (
    shelter   TEXT    PRIMARY KEY,           -- registry shelter id
    at        TEXT    NOT NULL,
    occupants INTEGER NOT NULL,
    capacity  INTEGER NOT NULL
) STRICT;
