-- What comes back from SMS centres, as carriers' centres really send it.
--
-- 1. A text accepted by the centre and never receipted reaches a final state after the
--    account's receipt deadline: `delivery_unknown` ("sent, no receipt"), never delivered and
--    never left open. The state list of dispatch_message gains it (SQLite adds to a CHECK only
--    by rebuilding the table: same columns, same indexes).
-- 2. Receipts are matched on a key, not the raw id: many centres answer submit_sm with a
--    hexadecimal id and write it in decimal in the receipt. id_key is the id under the form the
--    account's centre uses (outbox::ids): the raw id until a form is configured or learnt.
--    dispatch_id_form keeps what was learnt per account, with the evidence.
-- 3. Long replies from phones come in parts (UDH or SAR); dispatch_mo_part keeps each part
--    until the reply is whole (or its wait is over), and dispatch_inbound.incomplete marks a
--    reply handled with parts missing.

CREATE TABLE dispatch_message_new (
    id            INTEGER PRIMARY KEY,
    decision      INTEGER NOT NULL,            -- corr_decision.id: the warning version
    lineage       TEXT    NOT NULL,            -- hazard:area
    version       INTEGER NOT NULL,
    send          TEXT    NOT NULL,            -- Alert | Update | Cancel
    hazard        TEXT    NOT NULL,
    tier          TEXT    NOT NULL,
    raises        INTEGER NOT NULL,            -- 1: raises the danger for someone (never held back)
    person        TEXT    NOT NULL,            -- registry person id
    channel       TEXT    NOT NULL,            -- sms
    address       TEXT    NOT NULL,            -- normalised number (or what was given, if invalid)
    priority      INTEGER NOT NULL,            -- higher first
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'submitting', 'reconciling',
                          'accepted', 'delivered', 'delivery_unknown', 'failed', 'expired',
                          'superseded', 'merged', 'skipped')),
                                               -- outbox::MessageState
    merged_into   INTEGER,                     -- the message that carried this one's words
    text          TEXT    NOT NULL,            -- this warning's own text, rendered at enqueue
    segments      INTEGER NOT NULL,
    sent_text     TEXT,                        -- what the last claim sent (merged texts differ)
    sent_segments INTEGER,
    words         TEXT    NOT NULL,            -- the warning's words (JSON) for merged texts
    attempts      INTEGER NOT NULL DEFAULT 0,
    uncertain     INTEGER NOT NULL DEFAULT 0,  -- sends with no verdict (possible duplicates)
    not_before    TEXT    NOT NULL,            -- not claimed before
    account       TEXT,                        -- SMSC account used last
    last_error    TEXT,
    created       TEXT    NOT NULL,
    updated       TEXT    NOT NULL,
    purpose       TEXT    NOT NULL DEFAULT 'warning',
    claimed_by    TEXT
) STRICT;
INSERT INTO dispatch_message_new (id, decision, lineage, version, send, hazard, tier, raises, person, channel, address, priority, state, merged_into, text, segments, sent_text, sent_segments, words, attempts, uncertain, not_before, account, last_error, created, updated, purpose, claimed_by)
SELECT id, decision, lineage, version, send, hazard, tier, raises, person, channel, address, priority, state, merged_into, text, segments, sent_text, sent_segments, words, attempts, uncertain, not_before, account, last_error, created, updated, purpose, claimed_by
FROM dispatch_message;
DROP TABLE dispatch_message;
ALTER TABLE dispatch_message_new RENAME TO dispatch_message;
CREATE INDEX dispatch_message_ready ON dispatch_message (channel, state, priority DESC, id);
CREATE INDEX dispatch_message_person ON dispatch_message (channel, person, state, priority DESC, id);
CREATE INDEX dispatch_message_lineage ON dispatch_message (lineage, person);
CREATE INDEX dispatch_message_age ON dispatch_message (channel, state, created);
CREATE UNIQUE INDEX dispatch_message_key ON dispatch_message (decision, person, channel, purpose);
CREATE INDEX dispatch_message_merged ON dispatch_message (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX dispatch_message_address ON dispatch_message (address, id);

ALTER TABLE dispatch_part ADD COLUMN id_key TEXT;
UPDATE dispatch_part SET id_key = smsc_id;
CREATE INDEX dispatch_part_key ON dispatch_part (account, id_key);

ALTER TABLE dispatch_inbound ADD COLUMN id_key TEXT;
UPDATE dispatch_inbound SET id_key = smsc_id;
ALTER TABLE dispatch_inbound ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dispatch_inbound_key ON dispatch_inbound (account, id_key) WHERE id_key IS NOT NULL;

CREATE TABLE dispatch_id_form (
    account  TEXT PRIMARY KEY,
    form     TEXT NOT NULL CHECK (form IN ('auto', 'exact', 'hex-decimal', 'decimal-hex',
                                           'decimal', 'hex')),
                                          -- outbox::ReceiptIds
    since    TEXT NOT NULL,
    evidence INTEGER NOT NULL             -- receipts that matched under it when it was learnt
) STRICT;

CREATE TABLE dispatch_mo_part (
    account  TEXT    NOT NULL,
    source   TEXT    NOT NULL,            -- the phone, as the centre gave it
    dest     TEXT    NOT NULL,
    ref      INTEGER NOT NULL,            -- the concatenation reference (8 or 16 bits)
    total    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,            -- 1-based
    coding   INTEGER NOT NULL,            -- data_coding
    payload  BLOB    NOT NULL,            -- the part's text octets, headers removed
    at       TEXT    NOT NULL,
    PRIMARY KEY (account, source, ref, total, seq)
) STRICT;
