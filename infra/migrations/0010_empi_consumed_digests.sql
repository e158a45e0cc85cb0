-- The index's claimed event ids keep their record's content digest too (0009, docs/processing.md).
ALTER TABLE empi.consumed ADD COLUMN content_digest bigint;
