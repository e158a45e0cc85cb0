"""The shared record's tables, created in each generation's schema."""

from __future__ import annotations

from projections.frame.declaration import Table
from projections.outbox import OUTBOX

# The link table: who each member's local patient is, as the patient index decided.
LOCAL_PATIENTS = Table(
    name="local_patients",
    ddl="""
CREATE TABLE {schema}.local_patients (
    institution  text NOT NULL,
    local_id     text NOT NULL,
    person_id    text,               -- the index's person, possibly merged away since
    links        jsonb NOT NULL DEFAULT '[]',  -- every link/unlink decision, sorted
    projected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (institution, local_id)
);
CREATE INDEX ON {schema}.local_patients (person_id);
""",
    digest_columns=("institution", "local_id", "person_id", "links"),
    order_by=("institution", "local_id"),
)

MERGED_PERSONS = Table(
    name="merged_persons",
    ddl="""
CREATE TABLE {schema}.merged_persons (
    retired_person_id  text PRIMARY KEY,
    survivor_person_id text,
    merges             jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX ON {schema}.merged_persons (survivor_person_id);
""",
    digest_columns=("retired_person_id", "survivor_person_id", "merges"),
    order_by=("retired_person_id",),
)

_ENTRY_COLUMNS = (
    "event_id",
    "seq",
    "kind",
    "institution",
    "local_id",
    "occurred_at",
    "event_type",
    "subject_id",
    "status",
    "code_system",
    "code",
    "display",
    "detail",
)

ENTRIES = Table(
    name="entries",
    ddl="""
CREATE TABLE {schema}.entries (
    event_id     uuid NOT NULL,
    seq          integer NOT NULL,
    kind         text NOT NULL,
    institution  text NOT NULL,
    local_id     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    event_type   text NOT NULL,
    subject_id   text,
    status       text,
    code_system  text,
    code         text,
    display      text,
    detail       jsonb NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, seq)
);
CREATE INDEX ON {schema}.entries (institution, local_id, occurred_at);
CREATE INDEX ON {schema}.entries (institution, subject_id);
""",
    digest_columns=_ENTRY_COLUMNS,
    order_by=("event_id", "seq"),
)

RESULTS = Table(
    name="results",
    ddl="""
CREATE TABLE {schema}.results (
    institution     text NOT NULL,
    result_id       text NOT NULL,
    local_id        text NOT NULL,
    kind            text NOT NULL,
    order_id        text,
    code_system     text,
    code            text,
    display         text,
    status          text NOT NULL,
    content         jsonb NOT NULL,  -- values, unit, range, flag; or modality … impression
    effective_at    timestamptz NOT NULL,
    reported_at     timestamptz NOT NULL,
    amendments      integer NOT NULL,
    amended_at      timestamptz,
    report_event_id uuid NOT NULL,
    PRIMARY KEY (institution, kind, result_id)  -- lab and imaging are numbered apart
);
CREATE INDEX ON {schema}.results (institution, local_id);
CREATE INDEX ON {schema}.results (institution, order_id);
""",
    digest_columns=(
        "institution",
        "result_id",
        "local_id",
        "kind",
        "order_id",
        "code_system",
        "code",
        "display",
        "status",
        "content",
        "effective_at",
        "reported_at",
        "amendments",
        "amended_at",
        "report_event_id",
    ),
    order_by=("institution", "kind", "result_id"),
)

ORDERS = Table(
    name="orders",
    ddl="""
CREATE TABLE {schema}.orders (
    institution  text NOT NULL,
    order_id     text NOT NULL,
    local_id     text NOT NULL,
    category     text,
    code_system  text,
    code         text,
    display      text,
    priority     text,
    placed_at    timestamptz,
    cancelled_at timestamptz,
    status       text NOT NULL,
    results      integer NOT NULL,
    PRIMARY KEY (institution, order_id)
);
CREATE INDEX ON {schema}.orders (institution, local_id);
CREATE INDEX ON {schema}.orders (placed_at);
""",
    digest_columns=(
        "institution",
        "order_id",
        "local_id",
        "category",
        "code_system",
        "code",
        "display",
        "priority",
        "placed_at",
        "cancelled_at",
        "status",
        "results",
    ),
    order_by=("institution", "order_id"),
)

CONSENTS = Table(
    name="consents",
    ddl="""
CREATE TABLE {schema}.consents (
    consent_id   text PRIMARY KEY,
    institution  text NOT NULL,
    local_id     text NOT NULL,
    scope        text NOT NULL,
    institutions text[] NOT NULL,
    purposes     text[] NOT NULL,
    valid_from   timestamptz NOT NULL,
    expires_at   timestamptz,
    granted_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX ON {schema}.consents (institution, local_id);
""",
    digest_columns=(
        "consent_id",
        "institution",
        "local_id",
        "scope",
        "institutions",
        "purposes",
        "valid_from",
        "expires_at",
        "granted_at",
        "revoked_at",
    ),
    order_by=("consent_id",),
)

# Lock rows of the derived results, orders and consents: a worker re-folds a subject only under
# its lock, so the last to commit has read every statement. Which exist depends on arrival order.
SUBJECT_LOCKS = Table(
    name="subject_locks",
    ddl="""
CREATE TABLE {schema}.subject_locks (
    kind        text NOT NULL,
    institution text NOT NULL,
    subject_id  text NOT NULL,
    PRIMARY KEY (kind, institution, subject_id)
);
""",
    digest_columns=(),
    order_by=("kind", "institution", "subject_id"),
)

# The repeat checks last derived and published (projections/record/checks.py): what a batch's
# re-check is compared with. A function of the stored facts, so part of the digest.
REPEAT_CHECKS = Table(
    name="repeat_checks",
    ddl="""
CREATE TABLE {schema}.repeat_checks (
    institution text NOT NULL,
    order_id    text NOT NULL,
    local_id    text NOT NULL,
    person_id   text NOT NULL,         -- the person (survivor) it was checked for
    ordered_at  timestamptz NOT NULL,
    flagged     boolean NOT NULL,
    reused      boolean NOT NULL,
    PRIMARY KEY (institution, order_id)
);
CREATE INDEX ON {schema}.repeat_checks (person_id);
CREATE INDEX ON {schema}.repeat_checks (institution, local_id);
""",
    digest_columns=(
        "institution",
        "order_id",
        "local_id",
        "person_id",
        "ordered_at",
        "flagged",
        "reused",
    ),
    order_by=("institution", "order_id"),
)

# Lock rows of persons: a batch re-checks a person's orders only under the locks of every id
# of the person, so two workers touching one person at two members cannot both miss the
# other's facts. Which exist depends on the arrival order.
PERSON_LOCKS = Table(
    name="person_locks",
    ddl="""
CREATE TABLE {schema}.person_locks (person_id text PRIMARY KEY);
""",
    digest_columns=(),
    order_by=("person_id",),
)

# OUTBOX: changed checks not yet on <consortium>.derived.repeats.v1 (docs/reporting.md).
TABLES = (
    LOCAL_PATIENTS,
    MERGED_PERSONS,
    ENTRIES,
    RESULTS,
    ORDERS,
    CONSENTS,
    SUBJECT_LOCKS,
    REPEAT_CHECKS,
    PERSON_LOCKS,
    OUTBOX,
)
ENTRY_COLUMNS = _ENTRY_COLUMNS
