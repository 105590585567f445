-- A respond ladder step can sound one village's loudspeakers again (action `terminal`): a copy
-- of the warning's latest broadcast for that village, once per broadcast and village.
-- Owned by src/dispatch/broadcast/jobs.rs.
ALTER TABLE broadcast_job ADD COLUMN resound INTEGER;   -- the job this one sounds again
DROP INDEX broadcast_job_key;
CREATE UNIQUE INDEX broadcast_job_key ON broadcast_job (decision, route, ifnull(resound, 0), areas);
