"""The reporting projection's tables, created in each generation's schema."""

from __future__ import annotations

from projections.frame.declaration import Table
from projections.outbox import OUTBOX

# Facts are bookkeeping (like the referral board's); what they contribute is part of the digest.
ENTITIES = Table(
    name="entities",
    ddl="""
CREATE TABLE {schema}.entities (
    key     text PRIMARY KEY,
    kind    text NOT NULL,
    facts   jsonb NOT NULL DEFAULT '[]',
    applied jsonb NOT NULL DEFAULT '[]',
    due_at  timestamptz
);
-- The sweep's work list: entities that a later event clock alone changes.
CREATE INDEX ON {schema}.entities (due_at) WHERE due_at IS NOT NULL;
""",
    digest_columns=("key", "kind", "applied"),
    order_by=("key",),
)

# Raw counts per institution and window: small counts live here, never leave the projection.
CELLS = Table(
    name="cells",
    ddl="""
CREATE TABLE {schema}.cells (
    grain        text        NOT NULL,
    window_start timestamptz NOT NULL,
    institution  text        NOT NULL,
    measure      text        NOT NULL,
    local_date   date        NOT NULL,
    value        bigint      NOT NULL,
    samples      int[]       NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (grain, window_start, institution, measure)
);
CREATE INDEX ON {schema}.cells (local_date);
""",
    digest_columns=("grain", "window_start", "institution", "measure", "value", "samples"),
    order_by=("grain", "window_start", "institution", "measure"),
)

# One row per local day: writers of a day's figures take it FOR UPDATE, in date order; the
# revision is the id of the transaction that last wrote the day (projections/reporting/days.py).
DAYS = Table(
    name="days",
    ddl="""
CREATE TABLE {schema}.days (
    local_date date   PRIMARY KEY,
    revision   bigint NOT NULL DEFAULT 0
);
""",
    digest_columns=(),
    order_by=("local_date",),
)

# What the bureaus see: the latest published record per scope and window.
FIGURES = Table(
    name="figures",
    ddl="""
CREATE TABLE {schema}.figures (
    view              text        NOT NULL,
    scope             text        NOT NULL,
    grain             text        NOT NULL,
    window_start      timestamptz NOT NULL,
    scope_kind        text        NOT NULL,
    institution_level text,
    local_date        date        NOT NULL,
    record            jsonb       NOT NULL,
    PRIMARY KEY (view, scope, grain, window_start)
);
CREATE INDEX ON {schema}.figures (local_date);
CREATE INDEX ON {schema}.figures (grain, window_start);
""",
    digest_columns=("view", "scope", "grain", "window_start", "record"),
    order_by=("view", "scope", "grain", "window_start"),
)

TABLES = (ENTITIES, CELLS, DAYS, FIGURES, OUTBOX)
