-- A denied read of an id that names no one (an unknown referral id) is recorded too, naming no
-- subject (docs/audit.md, "Denied reads of unknown ids"): otherwise a non-party could tell an
-- existing referral of others (a DENIED record, and a 503 when the audit is down) from an unknown
-- id (nothing). Only DENIED records may name no one; a released read always names its subject.
ALTER TABLE read_audit
    DROP CONSTRAINT read_audit_check,
    ADD CONSTRAINT read_audit_names_its_subject
        CHECK (person_id IS NOT NULL OR subject_local_id IS NOT NULL OR outcome = 'DENIED');
