-- Publishes the gateway refused because the credential's institution is not the events' source
-- (docs/security.md): one row per refused request, written before the 403 is answered.
-- Append-only like the read audit: a trigger refuses UPDATE, DELETE and TRUNCATE for everyone.

CREATE TABLE publish_refusals (
    refusal_id      uuid        PRIMARY KEY,
    refused_at      timestamptz NOT NULL,
    credential_id   uuid        NOT NULL,
    institution     text        NOT NULL,
    role            text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('http', 'hl7')),
    claimed_sources text[]      NOT NULL,
    event_ids       uuid[]      NOT NULL,
    event_types     text[]      NOT NULL,
    reason          text        NOT NULL,
    client_address  text
);

CREATE INDEX publish_refusals_by_institution ON publish_refusals (institution, refused_at DESC);

CREATE FUNCTION publish_refusals_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'publish_refusals is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER publish_refusals_append_only
    BEFORE UPDATE OR DELETE ON publish_refusals
    FOR EACH ROW EXECUTE FUNCTION publish_refusals_refuse_change();
CREATE TRIGGER publish_refusals_no_truncate
    BEFORE TRUNCATE ON publish_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION publish_refusals_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON publish_refusals FROM PUBLIC;
