"""The transfer projection's tables, created in each generation's schema."""

from __future__ import annotations

from projections.frame.declaration import Table
from projections.outbox import OUTBOX

PATIENTS = Table(
    name="patients",
    ddl="""
CREATE TABLE {schema}.patients (
    institution  text NOT NULL,
    local_id     text NOT NULL,
    person_id    text,              -- keyed hash of the resident id, or the index's person id
    referral_ids uuid[] NOT NULL DEFAULT '{{}}',
    facts        jsonb NOT NULL DEFAULT '[]',
    projected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (institution, local_id)
);
CREATE INDEX ON {schema}.patients (person_id);
CREATE INDEX ON {schema}.patients USING gin (referral_ids);
""",
    digest_columns=("institution", "local_id", "person_id", "referral_ids"),
    order_by=("institution", "local_id"),
)

# One row per referral a patient row names; the route is null until its request arrives.
# The row is also the lock that orders a request against the receivers who saw the referral.
ROUTES = Table(
    name="referral_routes",
    ddl="""
CREATE TABLE {schema}.referral_routes (
    referral_id      uuid PRIMARY KEY,
    from_institution text,
    to_institution   text,
    requested_at     timestamptz,
    event_id         uuid
);
""",
    digest_columns=("referral_id", "from_institution", "to_institution", "requested_at"),
    order_by=("referral_id",),
)

# Lock rows: every change to a person's patients re-derives the person under this lock.
PERSONS = Table(
    name="persons",
    ddl="CREATE TABLE {schema}.persons (person_id text PRIMARY KEY);",
    digest_columns=(),
    order_by=("person_id",),
)

TRANSFERS = Table(
    name="transfers",
    ddl="""
CREATE TABLE {schema}.transfers (
    transfer_id           uuid PRIMARY KEY,
    person_id             text NOT NULL,
    from_institution      text NOT NULL,
    from_patient_local_id text NOT NULL,
    from_encounter_id     text NOT NULL,
    discharged_at         timestamptz NOT NULL,
    discharge_disposition text NOT NULL,
    to_institution        text NOT NULL,
    to_patient_local_id   text NOT NULL,
    to_encounter_id       text NOT NULL,
    admitted_at           timestamptz NOT NULL,
    admission_source      text NOT NULL,
    referred              boolean NOT NULL,
    referral_id           uuid,
    projected_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {schema}.transfers (person_id);
CREATE INDEX ON {schema}.transfers (from_institution, admitted_at);
CREATE INDEX ON {schema}.transfers (to_institution, admitted_at);
""",
    digest_columns=(
        "transfer_id",
        "person_id",
        "from_institution",
        "from_patient_local_id",
        "from_encounter_id",
        "discharged_at",
        "discharge_disposition",
        "to_institution",
        "to_patient_local_id",
        "to_encounter_id",
        "admitted_at",
        "admission_source",
        "referred",
        "referral_id",
    ),
    order_by=("transfer_id",),
)

# PERSONS has no digest columns: which lock rows exist depends on the arrival order.
# OUTBOX: changed transfers not yet on <consortium>.derived.transfers.v1 (docs/reporting.md).
TABLES = (PATIENTS, ROUTES, PERSONS, TRANSFERS, OUTBOX)
