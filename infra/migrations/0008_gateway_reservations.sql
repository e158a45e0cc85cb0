-- A publish reserves its event ids before producing them (docs/gateway.md, Idempotency), so that
-- two requests with the same new id, in any gateway process, never both publish it. A row
-- without a Kafka position is such a reservation; once older than twice the gateway's wait for
-- Kafka (its holder crashed), a later request with the id may take it over.
ALTER TABLE gateway_published_events
    ALTER COLUMN topic DROP NOT NULL,
    ALTER COLUMN kafka_partition DROP NOT NULL,
    ALTER COLUMN kafka_offset DROP NOT NULL,
    ADD COLUMN reserved_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT gateway_published_events_position CHECK (
        (topic IS NULL) = (kafka_offset IS NULL) AND (kafka_partition IS NULL) = (kafka_offset IS NULL)
    );
