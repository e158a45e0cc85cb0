-- One answer per match review through the gateway (docs/empi.md, "The review queue"): the first
-- decision POSTed for a review id claims it, and a second one (a double click, another
-- administrator) is 409 — the review's own row says 'open' until the index has read the first
-- answer, so it cannot refuse the second. A claim without a Kafka offset is a publication in
-- progress; once older than twice the gateway's wait for Kafka (its holder crashed), a later
-- decision of the review may take it over. A failed publication releases its claim.
CREATE TABLE gateway_review_decisions (
    review_id    uuid        PRIMARY KEY,
    event_id     uuid        NOT NULL,
    decision     text        NOT NULL,
    decided_by   text        NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    kafka_offset bigint
);
