-- A warning's report counts the trail's entries about it (each text accepted, delivered or
-- failed names its warning's lineage in its detail). Without an index that count read the
-- whole trail, which only ever grows: 100 ms per report after one typhoon, and more with
-- every storm after. Only entries that name a lineage are indexed.
CREATE INDEX audit_lineage ON audit (json_extract(detail, '$.lineage'), kind)
    WHERE json_extract(detail, '$.lineage') IS NOT NULL;
