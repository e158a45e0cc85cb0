"""The read audit against real Kafka and PostgreSQL: every read recorded, or no data at all."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi import Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium.topics import ensure_topics
from empi_reviews import open_review
from events.catalog import Catalog
from events.codec import Codec
from events.topics import EVENT_TOPICS, READ_AUDIT_TOPIC, Family, person_key
from gateway.app import create_app
from gateway.audit import Outcome, Subject, audit, close_audit_log
from gateway.config import GatewayConfig
from gateway.deps import PrincipalDep
from gateway.principals import Role
from gateway.testing import issue_token
from infra.migrate import apply_migrations
from kafka_reads import topic_values
from projections.empi.store import open_reviews
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.referrals.projection import REFERRALS
from projections.referrals.synthetic import referral_flows

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
CODEC = Codec(Catalog.load())


class NoDeadLetters:
    """A sink that refuses to be used: these events are all valid."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


@pytest.fixture
def board_url(scratch_database_url: str) -> str:
    """A migrated database whose live referral board holds 40 synthetic flows."""
    apply_migrations(scratch_database_url)
    with psycopg.connect(scratch_database_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    events = [e for f in referral_flows(11, 40) for e in f]
    random.Random(11).shuffle(events)
    records = [
        Record("q.referral.v1", 0, i, None, CODEC.encode_event(e)) for i, e in enumerate(events)
    ]
    processor = BatchProcessor(REFERRALS, scratch_database_url, CODEC, NoDeadLetters())
    processor.process(records)
    processor.close()
    return scratch_database_url


@pytest.fixture
def config(kafka_bootstrap: str, board_url: str, fresh_consortium_id: str) -> GatewayConfig:
    specs = [READ_AUDIT_TOPIC, EVENT_TOPICS[Family.PERSON]]
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=specs)
    return GatewayConfig(fresh_consortium_id, kafka_bootstrap, board_url)


@pytest.fixture
def client(config: GatewayConfig) -> Iterator[TestClient]:
    app = create_app(config)
    with TestClient(app) as client:
        yield client
    close_audit_log(app)


def bearer(url: str, institution: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(url, institution, role)}"}


def audit_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM read_audit ORDER BY audited_at").fetchall()


def audit_topic(config: GatewayConfig) -> list[dict[str, Any]]:
    """Every record on the audit topic, decoded."""
    topic = READ_AUDIT_TOPIC.name(config.consortium_id)
    values = topic_values(config.bootstrap_servers, topic, READ_AUDIT_TOPIC.partitions)
    return [CODEC.decode(value).record for value in values]


def topic_ends(config: GatewayConfig) -> dict[int, int]:
    """The end offset of each partition of the audit topic (it starts at 0)."""
    consumer = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": "ends"})
    topic = READ_AUDIT_TOPIC.name(config.consortium_id)
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(READ_AUDIT_TOPIC.partitions)
        }
    finally:
        consumer.close()


def persons_shown(referral: dict[str, Any]) -> int:
    """How many persons a referral shows: each party with a local id, once per person."""
    parties = {
        referral[f"{side}_person_id"] or (referral[f"{side}_institution"], local)
        for side in ("from", "to")
        if (local := referral[f"{side}_patient_local_id"]) is not None
        or referral[f"{side}_person_id"] is not None
    }
    return len(parties)


def referral_of(url: str, referral_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute(
            "SELECT *, NULL AS from_person_id, NULL AS to_person_id FROM referrals.referrals"
            " WHERE referral_id = %s",
            (referral_id,),
        ).fetchone()
    assert row is not None
    return row


READERS = st.sampled_from(
    [
        (TOWNSHIP, Role.REFERRAL_DESK),
        (COUNTY, Role.REFERRAL_DESK),
        (VILLAGE, Role.CLINICIAN),
        (COUNTY, Role.BUREAU_ANALYST),
        (COUNTY, Role.ADMINISTRATOR),
    ]
)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    requests=st.lists(
        st.tuples(
            READERS,
            st.sampled_from(["list", "detail", "unknown", "access-log"]),
            st.integers(0, 99),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_every_read_is_audited_denied_reads_included(
    client: TestClient, board_url: str, config: GatewayConfig, requests: list[Any]
) -> None:
    before = len(audit_rows(board_url))
    with psycopg.connect(board_url) as conn:
        all_ids = [
            str(r[0])
            for r in conn.execute(
                "SELECT referral_id FROM referrals.referrals WHERE state <> 'AWAITING_REQUEST'"
                " ORDER BY referral_id"
            )
        ]
    tokens = {reader: bearer(board_url, *reader) for reader in {r for r, _, _ in requests}}
    reads = denied = 0
    for reader, kind, pick in requests:
        headers = tokens[reader]
        if kind == "list":
            response = client.get("/v1/referrals", params={"limit": 7}, headers=headers)
            if response.status_code == 200:
                reads += sum(persons_shown(i) for i in response.json()["items"])
            else:
                assert response.status_code == 403  # no person was looked up, none shown
        elif kind == "detail":
            rid = all_ids[pick % len(all_ids)]
            response = client.get(f"/v1/referrals/{rid}", headers=headers)
            reads += persons_shown(referral_of(board_url, rid))
            if response.status_code != 200:
                assert response.status_code in (403, 404)
                assert "timeline" not in response.json()
                denied += persons_shown(referral_of(board_url, rid))
        elif kind == "unknown":  # denied like another's referral: one record naming nobody
            response = client.get(f"/v1/referrals/{uuid.uuid4()}", headers=headers)
            assert response.status_code in (403, 404)
            reads += 1
            denied += 1
        else:
            response = client.get(f"/v1/persons/{uuid.uuid4()}/access-log", headers=headers)
            reads += 1
            if response.status_code != 200:
                assert response.status_code == 403
                denied += 1
    rows = audit_rows(board_url)[before:]
    assert len(rows) == reads  # audited reads ÷ reads = 1.000, denied reads included
    assert sum(1 for r in rows if r["outcome"] == "DENIED") == denied
    # Every row has its twin on the audit topic, at the place the row names.
    ends = topic_ends(config)
    everything = audit_rows(board_url)
    assert sum(ends.values()) == len(everything)
    places = {(r["kafka_partition"], r["kafka_offset"]) for r in everything}
    assert len(places) == len(everything)
    assert all(offset < ends[partition] for partition, offset in places)


def test_no_audit_topic_means_no_data(
    kafka_bootstrap: str, board_url: str, fresh_consortium_id: str
) -> None:
    # The audit topic of this consortium was never created, and the broker creates none.
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, board_url, publish_timeout_s=2)
    desk = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    app = create_app(config)
    try:
        with TestClient(app) as client:
            response = client.get("/v1/referrals", headers=desk)
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert "items" not in response.json()
            assert response.json()["type"].endswith("/audit-unavailable")
    finally:
        close_audit_log(app)
    assert audit_rows(board_url) == []


def test_an_unwritable_audit_table_means_no_data(
    client: TestClient, board_url: str, config: GatewayConfig
) -> None:
    desk = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    rid = client.get("/v1/referrals", headers=desk).json()["items"][0]["referral_id"]
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE read_audit ADD CONSTRAINT refuse CHECK (false) NOT VALID")
    response = client.get(f"/v1/referrals/{rid}", headers=desk)
    assert response.status_code == 503
    assert "timeline" not in response.json()
    listing = client.get("/v1/referrals", headers=desk)
    assert listing.status_code == 503 and "items" not in listing.json()
    # Kafka first (docs/audit.md): the topic holds the refused attempts, the table does not.
    rows = audit_rows(board_url)
    assert len(audit_topic(config)) > len(rows)


def test_the_audit_table_is_append_only(board_url: str) -> None:
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO read_audit (audit_id, request_id, audited_at, credential_id,"
            " institution, role, person_id, resource, purpose, outcome, topic,"
            " kafka_partition, kafka_offset) VALUES (gen_random_uuid(), gen_random_uuid(), now(),"
            " gen_random_uuid(), 'x', 'clinician', gen_random_uuid(), 'GET /x', 'TREAT',"
            " 'ALLOWED', 't', 0, 0)"
        )
        for statement in (
            "UPDATE read_audit SET outcome = 'DENIED'",
            "DELETE FROM read_audit",
            "TRUNCATE read_audit",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM read_audit").fetchone() == (1,)


def link(url: str, person_id: uuid.UUID, institution: str, local_id: str) -> None:
    """Record in the patient index that a member's local patient is this person."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO empi.records (institution, local_id, person_id, demographics,"
            " indexed_seq, assigned_seq) VALUES (%s, %s, %s, '{}', 0, 0)",
            (institution, local_id, person_id),
        )


def test_the_access_log_shows_who_read_a_person_including_refusals_and_itself(
    client: TestClient, board_url: str
) -> None:
    county = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    admin = bearer(board_url, COUNTY, Role.ADMINISTRATOR)
    item = client.get("/v1/referrals", headers=county).json()["items"][0]
    person = uuid.uuid4()
    link(board_url, person, item["from_institution"], item["from_patient_local_id"])
    # Read once before the link existed, now by person id, and refused a look at the log.
    after_link = client.get(f"/v1/referrals/{item['referral_id']}", headers=county)
    assert after_link.json()["from_person_id"] == str(person)
    refused = client.get(f"/v1/persons/{person}/access-log", headers=county)
    assert refused.status_code == 403
    log = client.get(f"/v1/persons/{person}/access-log", headers=admin)
    assert log.status_code == 200, log.text
    entries = log.json()
    assert [(e["resource"], e["outcome"]) for e in entries] == [
        ("GET /v1/persons/{person_id}/access-log", "ALLOWED"),
        ("GET /v1/persons/{person_id}/access-log", "DENIED"),
        ("GET /v1/referrals/{referral_id}", "ALLOWED"),
        ("GET /v1/referrals", "ALLOWED"),
    ]
    assert {e["institution"] for e in entries} == {COUNTY}
    assert all(e["client_address"] for e in entries)
    other = client.get(f"/v1/persons/{uuid.uuid4()}/access-log", headers=admin).json()
    assert [e["resource"] for e in other] == ["GET /v1/persons/{person_id}/access-log"]


def test_the_review_queue_is_an_administrators_and_a_decision_becomes_an_event(
    client: TestClient, board_url: str, config: GatewayConfig
) -> None:
    review = open_review(board_url)
    admin = bearer(board_url, COUNTY, Role.ADMINISTRATOR)
    desk = bearer(board_url, COUNTY, Role.REFERRAL_DESK)
    assert client.get("/v1/identity/reviews", headers=desk).status_code == 403
    queue = client.get("/v1/identity/reviews", headers=admin)
    assert queue.status_code == 200, queue.text
    assert [r["review_id"] for r in queue.json()] == [str(review)]
    rows = audit_rows(board_url)
    assert {(r["subject_institution"], r["subject_local_id"]) for r in rows} == {
        (VILLAGE, "P1"),
        (TOWNSHIP, "P9"),
    }
    path = f"/v1/identity/reviews/{review}/decision"
    refused = client.post(path, json={"decision": "SAME_PERSON"}, headers=desk)
    assert refused.status_code == 403
    decided = client.post(path, json={"decision": "SAME_PERSON", "note": "同一人"}, headers=admin)
    assert decided.status_code == 202, decided.text
    delivery = decided.json()
    assert delivery["topic"] == EVENT_TOPICS[Family.PERSON].name(config.consortium_id)
    consumer = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": "r"})
    try:
        tp = TopicPartition(delivery["topic"], delivery["partition"], delivery["offset"])
        consumer.assign([tp])
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        event = CODEC.decode_event(message.value() or b"")
    finally:
        consumer.close()
    assert event.event_type == "MatchReviewDecided"
    assert str(event.review_id) == str(review)  # type: ignore[attr-defined]
    assert event.decision == "SAME_PERSON"  # type: ignore[attr-defined]
    # Identity decisions are keyed by the person, so one person's decisions stay in order.
    assert message.key() == person_key(event.envelope.patient_local_id)
    unknown = client.post(
        f"/v1/identity/reviews/{uuid.uuid4()}/decision",
        json={"decision": "DIFFERENT_PERSONS"},
        headers=admin,
    )
    assert unknown.status_code == 404
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE empi.reviews SET status = 'same_person' WHERE review_id = %s", (review,)
        )
    again = client.post(path, json={"decision": "DIFFERENT_PERSONS"}, headers=admin)
    assert again.status_code == 409


def test_a_superseded_review_leaves_the_queue_and_is_not_decided(
    client: TestClient, board_url: str
) -> None:
    """The index closes a review whose record's own evidence changed (docs/empi.md)."""
    review = open_review(board_url)
    with psycopg.connect(board_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE empi.reviews SET status = 'superseded' WHERE review_id = %s", (review,)
        )
    admin = bearer(board_url, COUNTY, Role.ADMINISTRATOR)
    queue = client.get("/v1/identity/reviews", headers=admin)
    assert queue.status_code == 200 and str(review) not in {r["review_id"] for r in queue.json()}
    path = f"/v1/identity/reviews/{review}/decision"
    refused = client.post(path, json={"decision": "SAME_PERSON"}, headers=admin)
    assert refused.status_code == 409 and "superseded" in refused.json()["detail"]


def test_a_second_decision_of_a_review_is_refused_while_the_index_has_not_read_the_first(
    client: TestClient, board_url: str
) -> None:
    review, other = open_review(board_url), open_review(board_url)
    admin = bearer(board_url, COUNTY, Role.ADMINISTRATOR)
    second_admin = bearer(board_url, TOWNSHIP, Role.ADMINISTRATOR)
    path = f"/v1/identity/reviews/{review}/decision"
    first = client.post(path, json={"decision": "DIFFERENT_PERSONS"}, headers=admin)
    assert first.status_code == 202, first.text
    # The index has not read the first answer: the queue's row still says open.
    assert review in {r["review_id"] for r in open_reviews_of(board_url)}
    for headers in (admin, second_admin):  # a double click, another administrator
        again = client.post(path, json={"decision": "SAME_PERSON"}, headers=headers)
        assert again.status_code == 409, again.text
    elsewhere = client.post(
        f"/v1/identity/reviews/{other}/decision", json={"decision": "SAME_PERSON"}, headers=admin
    )
    assert elsewhere.status_code == 202, elsewhere.text
    with psycopg.connect(board_url) as conn:
        claims = conn.execute(
            "SELECT review_id, event_id, decision, kafka_offset IS NOT NULL"
            " FROM gateway_review_decisions ORDER BY claimed_at"
        ).fetchall()
    assert claims == [
        (review, uuid.UUID(first.json()["event_id"]), "DIFFERENT_PERSONS", True),
        (other, uuid.UUID(elsewhere.json()["event_id"]), "SAME_PERSON", True),
    ]


def open_reviews_of(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return open_reviews(conn)


def test_break_glass_is_recorded_with_its_reason_and_refused_without_one(
    config: GatewayConfig, board_url: str
) -> None:
    app = create_app(config)
    person = uuid.uuid4()

    @app.get("/test/break-glass")
    async def emergency(request: Request, principal: PrincipalDep, reason: str = "") -> str:
        await audit(
            request,
            principal,
            [Subject(person_id=person)],
            purpose="ETREAT",
            outcome=Outcome.BREAK_GLASS,
            reason=reason or None,
            detail={"resourceType": "AuditEvent"},
        )
        return "record"

    clinician = bearer(board_url, COUNTY, Role.CLINICIAN)
    try:
        with TestClient(app) as client:
            refused = client.get("/test/break-glass", headers=clinician)
            assert refused.status_code == 400 and refused.json() != "record"
            assert audit_rows(board_url) == []
            allowed = client.get(
                "/test/break-glass", params={"reason": "昏迷，急诊抢救"}, headers=clinician
            )
            assert allowed.json() == "record"
    finally:
        close_audit_log(app)
    [row] = audit_rows(board_url)
    assert (row["outcome"], row["reason"], row["purpose"]) == (
        "BREAK_GLASS",
        "昏迷，急诊抢救",
        "ETREAT",
    )
    assert row["person_id"] == person and row["detail"] == {"resourceType": "AuditEvent"}
