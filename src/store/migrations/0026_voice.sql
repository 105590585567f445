-- Voice calls (电话叫应): every attempt to ring a person about a message, and how it ended.
-- The message (channel 'voice') moves through the outbox's states like a text; this table
-- keeps each ring, so a person rung three times shows three attempts, and a key pressed is
-- read from here by respond (its own cursor) as an answer to the message's warning.
CREATE TABLE dispatch_call (
    id       INTEGER PRIMARY KEY,
    message  INTEGER NOT NULL,          -- dispatch_message.id (channel 'voice')
    trunk    TEXT NOT NULL,             -- the trunk it went through
    attempt  INTEGER NOT NULL,          -- the message's attempt number
    outcome  TEXT NOT NULL CHECK (outcome IN ('acknowledged', 'answered_no_key', 'busy',
                 'no_answer', 'rejected', 'unreachable', 'failed')),
                                        -- outbox::CallOutcome
    code     INTEGER,                   -- the SIP status code, when there was one
    key      TEXT,                      -- the key pressed (acknowledged)
    via      TEXT,                      -- how the key came: rfc4733 | info
    heard_ms INTEGER,                   -- audio played before the key or the end
    detail   TEXT,                      -- what went wrong, in words
    at       TEXT NOT NULL              -- when the call ended (UTC RFC 3339)
);
CREATE INDEX dispatch_call_message ON dispatch_call (message);
