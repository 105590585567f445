-- Lookups the outbox does per message, which scanned the whole table (every row of every
-- warning) and made the durable path slow down as the table grew: the rows merged into a
-- carrier (on every outcome and receipt), and the last message to a number (every SMS reply).
-- Owned by src/dispatch/outbox.rs.
CREATE INDEX dispatch_message_merged ON dispatch_message (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX dispatch_message_address ON dispatch_message (address, id);
