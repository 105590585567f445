-- Types and time in the store.
--
-- 1. Every state column holds one of its Rust enum's values (dispatch::outbox::MessageState and
--    PartState, respond::calls::CallState and StepState, dispatch::broadcast::jobs::JobState and
--    TargetState): a CHECK constraint refuses anything else. SQLite adds a CHECK only by
--    rebuilding the table: each is copied into a new table of the same columns and indexes.
-- 2. Every time stormbell stamps is stored in one fixed-width format, UTC to the millisecond
--    (2019-08-09T10:00:00.000Z, store::stamp), so ordering the text is ordering the times.
--    Before, three formats were in use (+08:00 offsets, UTC with and without fractions), and
--    `…:00.3Z` sorted before `…:00Z`. Times are rewritten here; one that cannot be read is kept
--    as it was. CAP's own times (corr_warning.sent/expires, feed_cap.sent) are data and keep the
--    sender's offset; the audit trail cannot be rewritten (its hashes cover its text), and its
--    order is its sequence.

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
                          'accepted', 'delivered', 'failed', 'expired', 'superseded', 'merged',
                          'skipped')),           -- outbox::MessageState
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
SELECT id, decision, lineage, version, send, hazard, tier, raises, person, channel, address, priority, state, merged_into, text, segments, sent_text, sent_segments, words, attempts, uncertain, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', not_before), not_before), account, last_error, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created), created), coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', updated), updated), purpose, claimed_by
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

CREATE TABLE dispatch_part_new (
    message  INTEGER NOT NULL,               -- dispatch_message.id
    part     INTEGER NOT NULL,               -- 1-based
    total    INTEGER NOT NULL,
    account  TEXT    NOT NULL,
    smsc_id  TEXT    NOT NULL,
    state    TEXT    NOT NULL CHECK (state IN ('accepted', 'delivered', 'failed')),
                                             -- outbox::PartState
    receipt  TEXT,                           -- the receipt's stat word
    at       TEXT    NOT NULL,
    PRIMARY KEY (message, part)
) STRICT;
INSERT INTO dispatch_part_new (message, part, total, account, smsc_id, state, receipt, at)
SELECT message, part, total, account, smsc_id, state, receipt, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at)
FROM dispatch_part;
DROP TABLE dispatch_part;
ALTER TABLE dispatch_part_new RENAME TO dispatch_part;
CREATE INDEX dispatch_part_smsc ON dispatch_part (account, smsc_id);

CREATE TABLE respond_call_new (
    id        INTEGER PRIMARY KEY,
    decision  INTEGER NOT NULL,
    lineage   TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    hazard    TEXT    NOT NULL,
    tier      TEXT    NOT NULL,
    person    TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    mobile    TEXT    NOT NULL,
    level     TEXT    NOT NULL,              -- county | town | village | group | site
    role      TEXT    NOT NULL,
    target    TEXT    NOT NULL,              -- the village or site they answer for
    deputy    TEXT,                          -- their A/B deputy (person id)
    words     TEXT    NOT NULL,              -- the warning's words (JSON) for chase texts
    called    TEXT    NOT NULL,              -- decision time
    state     TEXT    NOT NULL CHECK (state IN ('open', 'answered', 'covered', 'superseded',
                      'lifted', 'silent', 'replaced')), -- calls::CallState
    answered  TEXT,                          -- when (first answer)
    answer    INTEGER,                       -- respond_answer.id
    UNIQUE (decision, person, target)
) STRICT;
INSERT INTO respond_call_new (id, decision, lineage, version, hazard, tier, person, name, mobile, level, role, target, deputy, words, called, state, answered, answer)
SELECT id, decision, lineage, version, hazard, tier, person, name, mobile, level, role, target, deputy, words, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', called), called), state, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', answered), answered), answer
FROM respond_call;
DROP TABLE respond_call;
ALTER TABLE respond_call_new RENAME TO respond_call;
CREATE INDEX respond_call_person ON respond_call (person, lineage, state);
CREATE INDEX respond_call_place ON respond_call (lineage, target, state);
CREATE INDEX respond_call_open ON respond_call (lineage, state, person);
CREATE INDEX respond_call_silent ON respond_call (called) WHERE state = 'silent';

CREATE TABLE respond_step_new (
    id      INTEGER PRIMARY KEY,
    call    INTEGER NOT NULL,                -- respond_call.id
    step    INTEGER NOT NULL,                -- 1, 2, … in order
    due     TEXT    NOT NULL,
    action  TEXT    NOT NULL,                -- resend | deputy | town | county | terminal | silent
    state   TEXT    NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled')),
                                             -- calls::StepState
    fired   TEXT,
    detail  TEXT,                            -- what it did (messages queued, or why not)
    UNIQUE (call, step)
) STRICT;
INSERT INTO respond_step_new (id, call, step, due, action, state, fired, detail)
SELECT id, call, step, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', due), due), action, state, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', fired), fired), detail
FROM respond_step;
DROP TABLE respond_step;
ALTER TABLE respond_step_new RENAME TO respond_step;
CREATE INDEX respond_step_due ON respond_step (state, due);

CREATE TABLE broadcast_job_new (
    id          INTEGER PRIMARY KEY,
    decision    INTEGER NOT NULL,            -- corr_decision.id
    lineage     TEXT    NOT NULL,            -- hazard:area
    version     INTEGER NOT NULL,
    send        TEXT    NOT NULL,            -- Alert | Update | Cancel
    hazard      TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    route       TEXT    NOT NULL,            -- platform | icecast
    title       TEXT    NOT NULL,
    script      TEXT    NOT NULL,            -- what the loudspeaker says
    areas       TEXT    NOT NULL,            -- JSON array of 12-digit village codes
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'failed',
                        'superseded', 'skipped')), -- jobs::JobState
    ebm_id      TEXT,                        -- platform: this broadcast's EBMID
    related     TEXT,                        -- platform: the EBMID it replaces or stops
    audio       TEXT,                        -- SHA-256 of the MP3 that went out
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  TEXT    NOT NULL,            -- next send or poll
    deadline    TEXT    NOT NULL,            -- terminals must confirm play by then
    alarmed     INTEGER NOT NULL DEFAULT 0,  -- 1: its unreachable/unconfirmed alarm is raised
    result      TEXT,                        -- the platform's last words
    coverage    REAL,                        -- percent, as the platform reports it
    last_error  TEXT,
    created     TEXT    NOT NULL,
    updated     TEXT    NOT NULL,
    resound     INTEGER
) STRICT;
INSERT INTO broadcast_job_new (id, decision, lineage, version, send, hazard, tier, route, title, script, areas, state, ebm_id, related, audio, attempts, not_before, deadline, alarmed, result, coverage, last_error, created, updated, resound)
SELECT id, decision, lineage, version, send, hazard, tier, route, title, script, areas, state, ebm_id, related, audio, attempts, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', not_before), not_before), coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', deadline), deadline), alarmed, result, coverage, last_error, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created), created), coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', updated), updated), resound
FROM broadcast_job;
DROP TABLE broadcast_job;
ALTER TABLE broadcast_job_new RENAME TO broadcast_job;
CREATE INDEX broadcast_job_ready ON broadcast_job (route, state, not_before);
CREATE INDEX broadcast_job_lineage ON broadcast_job (lineage, route, version);
CREATE UNIQUE INDEX broadcast_job_key ON broadcast_job (decision, route, ifnull(resound, 0), areas);

CREATE TABLE broadcast_target_new (
    job      INTEGER NOT NULL,               -- broadcast_job.id
    terminal TEXT    NOT NULL,               -- registry terminal id (EBRID)
    village  TEXT    NOT NULL,
    state    TEXT    NOT NULL CHECK (state IN ('waiting', 'playing', 'played', 'failed',
                     'unconfirmed')),        -- jobs::TargetState
    detail   TEXT,
    updated  TEXT    NOT NULL,
    PRIMARY KEY (job, terminal)
) STRICT;
INSERT INTO broadcast_target_new (job, terminal, village, state, detail, updated)
SELECT job, terminal, village, state, detail, coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', updated), updated)
FROM broadcast_target;
DROP TABLE broadcast_target;
ALTER TABLE broadcast_target_new RENAME TO broadcast_target;
CREATE INDEX broadcast_target_terminal ON broadcast_target (terminal);

-- Every other stamped time.
UPDATE broadcast_alarm SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE broadcast_link SET last_ok = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', last_ok), last_ok), checked = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', checked), checked);
UPDATE broadcast_terminal SET seen = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', seen), seen), played_at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', played_at), played_at);
UPDATE corr_decision SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE corr_lineage SET updated = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', updated), updated);
UPDATE dispatch_bind SET since = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', since), since);
UPDATE dispatch_inbound SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE dispatch_link SET created = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created), created), expires = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', expires), expires);
UPDATE drill_run SET started = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', started), started), reached = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', reached), reached), finished = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', finished), finished);
UPDATE feed_cap SET received = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', received), received);
UPDATE feed_doc SET received = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', received), received);
UPDATE feed_inbox SET received = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', received), received);
UPDATE feed_seen SET first_seen = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', first_seen), first_seen);
UPDATE feed_state SET last_attempt = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', last_attempt), last_attempt), last_success = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', last_success), last_success), last_error_at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', last_error_at), last_error_at), gap_since = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', gap_since), gap_since);
UPDATE reg_import SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE respond_answer SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE respond_evacuation SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE respond_shelter_alert SET at = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', at), at);
UPDATE web_session SET created = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created), created), expires = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', expires), expires), ended = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', ended), ended);
UPDATE web_user SET created = coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created), created);
