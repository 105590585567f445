-- A check-in link belongs to the message that carries it: the token and its expiry are stored
-- on that row, found through a partial index on the token. The link table repeated the
-- message's decision, lineage, version, person and time, and writing it (a wide row at a
-- random place in a tree keyed by a random token, plus its index by message) was a third of
-- the time of queuing a red warning for 100,000 persons. One narrow index entry instead.
ALTER TABLE dispatch_message ADD COLUMN token TEXT;          -- 128 random bits, base64url
ALTER TABLE dispatch_message ADD COLUMN link_expires TEXT;   -- refused after (UTC RFC 3339)
UPDATE dispatch_message
   SET (token, link_expires) = (SELECT l.token, l.expires FROM dispatch_link l
                                WHERE l.message = dispatch_message.id)
 WHERE id IN (SELECT message FROM dispatch_link);
CREATE UNIQUE INDEX dispatch_message_token ON dispatch_message (token) WHERE token IS NOT NULL;
DROP TABLE dispatch_link;
