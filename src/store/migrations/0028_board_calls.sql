-- The office board counts every current call of the warnings in force: its place, its person,
-- its level, its state and when it was answered. Through the old index (lineage, state,
-- person) each call was a lookup of its row, and a call's row carries its warning's words: a
-- province's storm (900,000 calls) read 3 GB of them for one summary. The same index with the
-- columns the board reads answers it from the index alone; its leading columns are the old
-- ones, so every statement that used it still does.
DROP INDEX respond_call_open;
CREATE INDEX respond_call_open ON respond_call (lineage, state, person, target, level, answered);
