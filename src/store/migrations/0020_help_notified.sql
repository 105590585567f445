-- Which requests for help were passed on to the town and county (1) and which were kept for
-- the office only (0): a person's repeated requests, and those past the hourly bound. Before,
-- every request with new words texted every town and county duty person again. Owned by
-- src/respond/.
ALTER TABLE respond_answer ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;
