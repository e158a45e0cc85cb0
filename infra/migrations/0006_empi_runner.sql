-- The index runner's bookkeeping, kept inside schema empi so that a rebuilt generation of the
-- index (a schema of its own, renamed to empi at the switch) carries its own with it.

-- Event ids the index applied (a hospital's retry, a redelivery, a replay change nothing).
CREATE TABLE empi.consumed (
    event_id uuid PRIMARY KEY
);

-- The next offset the index reads per partition of the patient and person topics.
CREATE TABLE empi.positions (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition)
);

-- Where each applied batch ended per partition: matching depends on order, so a rebuild replays
-- the very same batches (each in the same canonical order) and reaches the very same index.
CREATE TABLE empi.batches (
    batch      bigint NOT NULL,
    topic      text   NOT NULL,
    partition  int    NOT NULL,
    end_offset bigint NOT NULL,
    PRIMARY KEY (batch, topic, partition)
);
