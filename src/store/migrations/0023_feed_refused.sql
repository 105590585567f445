-- What a listening feed (SL 651 telemetry) refused, by reason: bad CRC, truncated frames,
-- unknown stations, clocks far off. One row per feed and reason, counted, with the last one
-- seen, for /metrics and `status`.
CREATE TABLE feed_refused (
    feed TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('crc', 'truncated', 'malformed', 'unknown_station', 'clock', 'not_a_frame')),
    n INTEGER NOT NULL DEFAULT 0,
    last_at TEXT NOT NULL,
    last_detail TEXT NOT NULL,
    PRIMARY KEY (feed, reason)
);
