-- The board's calls from the index alone: see the SQLite migration of the same number.
DROP INDEX respond_call_open;
CREATE INDEX respond_call_open ON respond_call (lineage, state, person, target, level, answered);
