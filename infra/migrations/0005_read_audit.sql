-- The read audit (docs/audit.md): one row per person per read through the gateway, allowed,
-- denied or break-glass, written after Kafka acknowledged the same record on the audit topic.
-- Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE for every role, owners and
-- superusers included (privileges alone do not bind them).

CREATE TABLE read_audit (
    audit_id            uuid        PRIMARY KEY,
    request_id          uuid        NOT NULL,
    audited_at          timestamptz NOT NULL,
    credential_id       uuid        NOT NULL,
    institution         text        NOT NULL,
    role                text        NOT NULL,
    person_id           uuid,
    subject_institution text,
    subject_local_id    text,
    resource            text        NOT NULL,
    resource_id         text,
    purpose             text        NOT NULL,
    outcome             text        NOT NULL CHECK (outcome IN ('ALLOWED', 'DENIED', 'BREAK_GLASS')),
    reason              text,
    client_address      text,
    -- A shape of the read for other standards (the FHIR AuditEvent of a FHIR read), if any.
    detail              jsonb,
    -- Where Kafka stored the record: every row has its durable twin on the audit topic.
    topic               text        NOT NULL,
    kafka_partition     int         NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset        bigint      NOT NULL CHECK (kafka_offset >= 0),
    CHECK (person_id IS NOT NULL OR subject_local_id IS NOT NULL),
    CHECK (outcome <> 'BREAK_GLASS' OR reason IS NOT NULL)
);

-- "Who viewed me": one person's reads, newest first; and the reads of one local record.
CREATE INDEX read_audit_by_person ON read_audit (person_id, audited_at DESC) WHERE person_id IS NOT NULL;
CREATE INDEX read_audit_by_subject ON read_audit (subject_institution, subject_local_id, audited_at DESC);
CREATE INDEX read_audit_by_request ON read_audit (request_id);
-- Break-glass reads are reviewed after the fact.
CREATE INDEX read_audit_break_glass ON read_audit (audited_at) WHERE outcome = 'BREAK_GLASS';

CREATE FUNCTION read_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'read_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER read_audit_append_only
    BEFORE UPDATE OR DELETE ON read_audit
    FOR EACH ROW EXECUTE FUNCTION read_audit_refuse_change();
CREATE TRIGGER read_audit_no_truncate
    BEFORE TRUNCATE ON read_audit
    FOR EACH STATEMENT EXECUTE FUNCTION read_audit_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON read_audit FROM PUBLIC;
