-- What each claimed event id's record held (docs/processing.md, "Reused event ids"): an event id
-- read again with other bytes is a publisher's reused id, not a retry, and is dead-lettered
-- instead of being passed over as a duplicate. Rows claimed before this migration have none
-- (NULL: a later record with the id counts as a duplicate, as it did).
ALTER TABLE consumed_events ADD COLUMN content_digest bigint;
