-- Reports of people moved or back home beyond the figure the place registered. Before, "3
-- 99999" by SMS or 100,000 on the link's form was added to the county's totals as given.
-- Owned by src/respond/.
-- An answer whose number exceeded the place's registered figure (this figure) and waits for its
-- sender to confirm it: the person's calls are answered, the number is not counted.
ALTER TABLE respond_answer ADD COLUMN held INTEGER;
-- The figure this place's latest report was confirmed beyond (the registered one): counted,
-- and flagged on the board for the office to check with the village.
ALTER TABLE respond_evacuation ADD COLUMN beyond INTEGER;
