-- The secret that keys the ids the gateway derives from HL7 v2 (event ids from MSH-4|MSH-3|MSH-10,
-- referral ids from the referrer's code and RF1-6): with a public derivation any member could
-- compute another member's next ids (control ids and referral numbers are often sequential) and
-- publish under them first, so that member's message is refused for good (docs/gateway.md).
-- One row, made once per deployment: every gateway process and host reads the same key, so a
-- resend gets the same ids. 244 random bits from two version-4 UUIDs (core PostgreSQL).
CREATE TABLE gateway_id_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id_key    bytea   NOT NULL CHECK (length(id_key) = 32)
);

INSERT INTO gateway_id_key (id_key)
VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
