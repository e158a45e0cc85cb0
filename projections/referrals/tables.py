"""The referral projection's tables, created in each generation's schema."""

from __future__ import annotations

from projections.frame.declaration import Table

REFERRALS = Table(
    name="referrals",
    ddl="""
CREATE TABLE {schema}.referrals (
    referral_id           uuid PRIMARY KEY,
    state                 text NOT NULL,
    direction             text,
    from_institution      text,
    to_institution        text,
    urgency               text,
    reason_code           text,
    requested_service     text,
    from_patient_local_id text,
    to_patient_local_id   text,
    requested_at          timestamptz,
    accept_deadline       timestamptz,
    expires_at            timestamptz,
    answered_at           timestamptz,
    scheduled_arrival     timestamptz,
    arrived_at            timestamptz,
    closed_at             timestamptz,
    overdue               boolean NOT NULL DEFAULT false,
    parked_events         int NOT NULL DEFAULT 0,
    facts                 jsonb NOT NULL DEFAULT '[]',
    projected_at          timestamptz NOT NULL DEFAULT now()
);
""",
    # The desks' lists and the sweep's work lists; the store locks and writes by primary key.
    after_load="""
CREATE INDEX ON {schema}.referrals (from_institution, state);
CREATE INDEX ON {schema}.referrals (to_institution, state);
-- The sweep's work list: unanswered requests, by the limit the clock passes next.
CREATE INDEX ON {schema}.referrals (accept_deadline) WHERE state = 'REQUESTED' AND NOT overdue;
CREATE INDEX ON {schema}.referrals (expires_at) WHERE state = 'REQUESTED';
-- Who sent a referral's events: each sender lists its events not on its board (reads.py).
CREATE INDEX ON {schema}.referrals USING gin (jsonb_path_query_array(facts, '$[*].source'));
""",
    digest_columns=(
        "referral_id",
        "state",
        "direction",
        "from_institution",
        "to_institution",
        "urgency",
        "reason_code",
        "requested_service",
        "from_patient_local_id",
        "to_patient_local_id",
        "requested_at",
        "accept_deadline",
        "expires_at",
        "answered_at",
        "scheduled_arrival",
        "arrived_at",
        "closed_at",
        "overdue",
        "parked_events",
    ),
    order_by=("referral_id",),
    changed_at="projected_at",  # the desks' stream (gateway/routers/referrals.py)
)

TIMELINE = Table(
    name="referral_timeline",
    ddl="""
CREATE TABLE {schema}.referral_timeline (
    referral_id uuid NOT NULL,
    seq         int  NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    event_id    uuid,
    source      text,
    PRIMARY KEY (referral_id, seq)
);
""",
    digest_columns=("referral_id", "seq", "at", "kind", "status", "event_id", "source"),
    order_by=("referral_id", "seq"),
)

TABLES = (REFERRALS, TIMELINE)
