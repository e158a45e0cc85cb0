-- Blue/green generations of projections (first used by the referral projection).
-- Each generation's tables live in the PostgreSQL schema <projection>_g<N>; readers use the
-- views of the schema <projection>, which point at the one live generation.

CREATE TABLE projection_generations (
    projection text NOT NULL,
    generation int  NOT NULL CHECK (generation > 0),
    status     text NOT NULL CHECK (status IN ('building', 'live', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    live_since timestamptz,
    PRIMARY KEY (projection, generation)
);

-- At most one live generation per projection: readers and writers agree on it.
CREATE UNIQUE INDEX projection_generations_one_live
    ON projection_generations (projection) WHERE status = 'live';

-- The event clock: the largest occurred_at applied per partition, for each generation key
-- (`<projection>.g<N>`, the same key as consumed_events and consumer_offsets).
CREATE TABLE projection_clocks (
    projection text        NOT NULL,
    topic      text        NOT NULL,
    partition  int         NOT NULL,
    clock      timestamptz NOT NULL,
    PRIMARY KEY (projection, topic, partition)
);
