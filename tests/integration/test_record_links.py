"""A person's timeline follows the patient index: link → one timeline, unlink → split, merge."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from bench.fhir import visits
from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.derived import RepeatCheckDerived
from events.encounter import OutpatientVisitStarted, PatientAdmitted
from events.envelope import Envelope, Event
from events.person import MatchMethod, PersonLinked, PersonsMerged, PersonUnlinked, UnlinkReason
from events.topics import event_key, event_topic
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.records import Record
from projections.record import queries
from projections.record.projection import RECORD
from projections.record.synthetic import COUNTY, HYPERTENSION, START, TOWNSHIP

CODEC = Codec(Catalog.load())
P, Q = str(uuid.uuid4()), str(uuid.uuid4())
AT_TOWNSHIP, AT_COUNTY = (TOWNSHIP, "T-001"), (COUNTY, "ZY-001")


def _env(kind: str, source: str, local_id: str, hours: int) -> Envelope:
    at = START + timedelta(hours=hours)
    return Envelope(
        event_id=uuid.uuid4(),
        event_type=kind,
        occurred_at=at,
        recorded_at=at,
        source=source,
        patient_local_id=local_id,
    )


def linked(person: str, patient: tuple[str, str], hours: int) -> PersonLinked:
    return PersonLinked(
        envelope=_env("PersonLinked", COUNTY, person, hours),
        person_id=uuid.UUID(person),
        institution=patient[0],
        local_id=patient[1],
        method=MatchMethod.RESIDENT_ID,
        score=30.0,
        agreement=(),
    )


def clinical() -> list[Event]:
    """A visit at the township and an admission at the county hospital, two local ids."""
    return [
        OutpatientVisitStarted(
            envelope=_env("OutpatientVisitStarted", *AT_TOWNSHIP, 1),
            encounter_id="MZ1",
            visit_type="GENERAL",
            department_code="01",
            department_name="全科",
        ),
        PatientAdmitted(
            envelope=_env("PatientAdmitted", *AT_COUNTY, 30),
            encounter_id="ZY1",
            admission_type="URGENT",
            admission_source="REFERRAL",
            department_code="03",
            department_name="内科",
            ward_code="W1",
            admitting_diagnosis=HYPERTENSION,
            attending_clinician_id="D1",
        ),
    ]


@pytest.fixture
def process(
    scratch_database_url: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> Iterator[Any]:
    apply_migrations(scratch_database_url)
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    with psycopg.connect(scratch_database_url) as conn:
        generations.ensure_live(conn, RECORD)
    letters = KafkaDeadLetters(kafka_bootstrap, fresh_consortium_id, "record")
    processor = BatchProcessor(RECORD, scratch_database_url, CODEC, letters)
    offsets: dict[str, int] = {}

    def feed(*events: Event) -> None:
        records = []
        for e in events:
            topic = event_topic(e.family, fresh_consortium_id)
            offsets[topic] = (offset := offsets.get(topic, 0)) + 1
            key = event_key(e.family, e.envelope.source, e.envelope.patient_local_id)
            records.append(Record(topic, 0, offset, key, CODEC.encode_event(e)))
        assert processor.process(records).applied == len(events)

    yield feed, scratch_database_url
    processor.close()


def members_in(url: str, person: str) -> tuple[str, set[str]]:
    """The person the timeline resolves to and the members whose entries it shows."""
    with psycopg.connect(url) as conn:
        page = queries.timeline(conn, person)
    return page.person.person_id, {e.institution for e in page.entries}


def test_link_unlink_and_merge_reshape_the_timelines(process: Any) -> None:
    feed, url = process
    feed(*clinical())
    assert members_in(url, P) == (P, set())  # nobody linked yet: entries wait, unseen
    feed(linked(P, AT_TOWNSHIP, 0), linked(P, AT_COUNTY, 0))
    assert members_in(url, P) == (P, {TOWNSHIP, COUNTY})  # one timeline across two members
    unlink = PersonUnlinked(
        envelope=_env("PersonUnlinked", COUNTY, P, 40),
        person_id=uuid.UUID(P),
        institution=AT_COUNTY[0],
        local_id=AT_COUNTY[1],
        reason=UnlinkReason.REVIEW,
        relinked_person_id=uuid.UUID(Q),
    )
    feed(linked(Q, AT_COUNTY, 40), unlink)  # the move, its two halves read in reverse
    assert members_in(url, P) == (P, {TOWNSHIP})  # split
    assert members_in(url, Q) == (Q, {COUNTY})
    merged = PersonsMerged(
        envelope=_env("PersonsMerged", COUNTY, P, 50),
        person_id=uuid.UUID(P),
        retired_person_id=uuid.UUID(Q),
        method=MatchMethod.REVIEW,
    )
    feed(merged)
    assert members_in(url, P) == (P, {TOWNSHIP, COUNTY})  # combined again
    assert members_in(url, Q) == (P, {TOWNSHIP, COUNTY})  # the retired id reads the survivor
    with psycopg.connect(url) as conn:
        who = queries.person(conn, Q)
    assert who.merged_ids == tuple(sorted((P, Q))) and set(who.local_patients) == {
        AT_TOWNSHIP,
        AT_COUNTY,
    }


def checks_now(url: str) -> tuple[dict[str, tuple[bool, bool]], dict[str, tuple[bool, ...]]]:
    """The stored checks by ordering member, and the latest revision in the outbox of each
    (check id → present, flagged, reused)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT institution, flagged, reused FROM record.repeat_checks")
        table = {i: (f, r) for i, f, r in rows.fetchall()}
        payloads = conn.execute("SELECT payload FROM record.outbox ORDER BY seq").fetchall()
    latest: dict[str, tuple[bool, ...]] = {}
    for (payload,) in payloads:
        event = CODEC.decode_event(bytes(payload))
        assert isinstance(event, RepeatCheckDerived)
        latest[event.institution] = (event.present, event.flagged, event.reused)
    return table, latest


def test_a_result_at_another_member_flags_an_order_and_links_move_the_flag(process: Any) -> None:
    """One blood count ordered at each member, the township's first: the county's order is a
    possible repeat exactly while the two local patients are one person."""
    feed, url = process
    morning = START + timedelta(days=2)
    township, county = (TOWNSHIP, "T-CBC"), (COUNTY, "C-CBC")
    feed(*visits(*county, 1, morning + timedelta(hours=5)), linked(P, county, 0))
    assert checks_now(url) == ({COUNTY: (False, False)}, {COUNTY: (True, False, False)})
    # The township's earlier result arrives (with its link) after the county's order: a batch
    # at the township changes the check of an order at the county.
    feed(*visits(*township, 1, morning), linked(P, township, 0))
    flagged = {COUNTY: (True, False), TOWNSHIP: (False, False)}
    assert checks_now(url) == (
        flagged,
        {COUNTY: (True, True, False), TOWNSHIP: (True, False, False)},
    )
    unlink = PersonUnlinked(
        envelope=_env("PersonUnlinked", COUNTY, P, 60),
        person_id=uuid.UUID(P),
        institution=county[0],
        local_id=county[1],
        reason=UnlinkReason.REVIEW,
        relinked_person_id=None,
    )
    feed(unlink)  # the county's patient is nobody known: its order is no longer checked
    assert checks_now(url) == (
        {TOWNSHIP: (False, False)},
        {COUNTY: (False, True, False), TOWNSHIP: (True, False, False)},
    )
    feed(linked(Q, county, 70))  # someone else: checked again, but not a repeat
    assert checks_now(url)[1][COUNTY] == (True, False, False)
    merged = PersonsMerged(
        envelope=_env("PersonsMerged", COUNTY, P, 80),
        person_id=uuid.UUID(P),
        retired_person_id=uuid.UUID(Q),
        method=MatchMethod.REVIEW,
    )
    feed(merged)  # the same person after all: a batch of the index's merge re-flags it
    assert checks_now(url) == (
        flagged,
        {COUNTY: (True, True, False), TOWNSHIP: (True, False, False)},
    )
