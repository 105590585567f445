-- The trail's entries by the warning they name: see the SQLite migration of the same number.
-- The expression is what the SQLite one's json_extract becomes on PostgreSQL.
CREATE INDEX audit_lineage ON audit ((CAST(detail AS json) #>> '{lineage}'), kind)
    WHERE (CAST(detail AS json) #>> '{lineage}') IS NOT NULL;
