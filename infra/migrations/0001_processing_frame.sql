-- The frame every projection uses for effectively-once processing: a projection's
-- read-model writes and these rows commit in the same transaction.

-- Event ids a projection has applied; a redelivered or re-published event is skipped.
CREATE TABLE consumed_events (
    projection text NOT NULL,
    event_id   uuid NOT NULL,
    PRIMARY KEY (projection, event_id)
);

-- The next offset a projection reads per partition; a restart resumes exactly here.
CREATE TABLE consumer_offsets (
    projection  text   NOT NULL,
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (projection, topic, partition)
);
