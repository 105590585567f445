-- Messages that are not a warning version's own text: respond's re-sends, notices up the
-- ladder and answers to replies. They go through the same outbox (queue, claim, receipts),
-- are never merged with warnings, and key on their purpose. Owned by src/dispatch/outbox.rs.
ALTER TABLE dispatch_message ADD COLUMN purpose TEXT NOT NULL DEFAULT 'warning';
DROP INDEX dispatch_message_key;
CREATE UNIQUE INDEX dispatch_message_key ON dispatch_message (decision, person, channel, purpose);
