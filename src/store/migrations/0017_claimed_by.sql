-- Which channel claimed a message (smpp, kannel, drill): when the supervisor restarts one
-- channel, it takes back only the rows *it* left mid-send. Before this column a restart parked
-- every row in `submitting`, including rows another channel still had in flight, and those
-- were sent again after the grace period: a duplicate text counted as "uncertain".
-- Rows claimed before this migration have none: the daemon's start takes them all back, as
-- it always did. Owned by src/dispatch/outbox.rs.
ALTER TABLE dispatch_message ADD COLUMN claimed_by TEXT;
