"""The transfer projection on the frame: effectively once, any order, concurrent, rebuildable."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg
import pytest

import examples
from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.encounter import DischargeDisposition
from events.envelope import Event
from events.person import PersonLinked, PersonsMerged
from events.publisher import Publisher
from events.topics import event_topic, patient_key
from infra.migrate import apply_migrations
from processors.rebuild import rebuild
from projections.frame import generations
from projections.frame.batch import BatchProcessor, fixed_target
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.generations import Generation
from projections.frame.records import Record
from projections.transfers.projection import TRANSFERS
from projections.transfers.queries import list_transfers
from projections.transfers.stays import transfers_of
from projections.transfers.synthetic import transfer_flows
from workers import on_two_workers

CODEC = Codec(Catalog.load())
PERSONS = TRANSFERS.key_of.args[0]  # type: ignore[attr-defined]


@pytest.fixture
def migrated_url(scratch_database_url: str) -> str:
    apply_migrations(scratch_database_url)
    return scratch_database_url


@pytest.fixture
def topics(kafka_bootstrap: str, fresh_consortium_id: str) -> str:
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    return fresh_consortium_id


def shuffled_events(seed: int, flows: int) -> list[Event]:
    """Flows interleaved: admissions, discharges, registrations and referrals in any order."""
    events = [e for flow in transfer_flows(seed, flows) for e in flow]
    random.Random(seed).shuffle(events)
    return events


def with_index_history(events: list[Event], seed: int) -> list[Event]:
    """The index reaching the flows' persons the long way round: per link, as it is, or first to
    another person that is later merged into it (sometimes through a second merge), or moved to
    it (unlink + link at one instant) — the merges keyed by the survivor, the links by the
    retired person: other partitions, other workers."""
    rng = random.Random(seed)
    out: list[Event] = []
    for e in events:
        if not isinstance(e, PersonLinked):
            out.append(e)
            continue
        way, at = rng.randrange(4), e.envelope.occurred_at
        early = uuid.uuid5(uuid.NAMESPACE_URL, f"early|{e.envelope.event_id}")
        later = at + timedelta(days=rng.randrange(-40, 40))
        if way == 0:
            out.append(e)
            continue
        out.append(examples.linked_to(early, e.institution, e.local_id, at))
        if way == 1:
            out.append(examples.merged_into(e.person_id, early, later))
        elif way == 2:
            between = uuid.uuid5(uuid.NAMESPACE_URL, f"between|{e.envelope.event_id}")
            out.append(examples.merged_into(between, early, later))
            out.append(examples.merged_into(e.person_id, between, later - timedelta(days=1)))
        else:
            moved = max(at, later)
            out.append(examples.unlinked_from(early, e.institution, e.local_id, moved))
            out.append(examples.linked_to(e.person_id, e.institution, e.local_id, moved))
    rng.shuffle(out)
    return out


def as_records(events: list[Event], consortium_id: str, partitions: int = 6) -> list[Record]:
    """Events as records of their family's topic, partitioned by patient key."""
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for event in events:
        key = patient_key(event.envelope.source, event.envelope.patient_local_id)
        tp = (event_topic(event.family, consortium_id), hash(key) % partitions)
        offset = offsets.get(tp, 0)
        offsets[tp] = offset + 1
        records.append(Record(tp[0], tp[1], offset, key, CODEC.encode_event(event)))
    return records


def stored(url: str, generation: Generation | None = None) -> dict[str, bool]:
    schema = generation.schema if generation else "transfers"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT transfer_id, referred FROM {schema}.transfers").fetchall()
    return {str(t): referred for t, referred in rows}


def expected(events: list[Event]) -> dict[str, bool]:
    return {str(t.transfer_id): t.referred for t in transfers_of(PERSONS, events)}


@pytest.fixture
def live(migrated_url: str, kafka_bootstrap: str, topics: str) -> Iterator[BatchProcessor]:
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, TRANSFERS)
    letters = KafkaDeadLetters(kafka_bootstrap, topics, "transfers")
    processor = BatchProcessor(TRANSFERS, migrated_url, CODEC, letters)
    yield processor
    processor.close()


def test_batches_in_any_order_with_redelivery_give_the_pure_transfers(
    live: BatchProcessor, migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = shuffled_events(1, 80)
    records = as_records(events, topics)
    for start in range(0, len(records), 23):
        live.process(records[start : start + 23])
    want = expected(events)
    assert len(want) > 30 and 0 < sum(want.values()) < len(want)  # referred and unreferred
    assert stored(migrated_url) == want
    with psycopg.connect(migrated_url) as conn:
        before = digest(conn, TRANSFERS, Generation("transfers", 1))
    assert live.process(records).stale == len(records)  # Kafka redelivers
    retried = [replace(r, offset=r.offset + 10_000) for r in records[:50]]
    retry = live.process(retried)  # a hospital retries
    assert retry.applied == 0 and retry.duplicates + retry.ignored == 50
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, TRANSFERS, Generation("transfers", 1)) == before
        some = next(iter(want))
        row = conn.execute(
            "SELECT from_institution, referred FROM transfers.transfers WHERE transfer_id = %s",
            (some,),
        ).fetchone()
        assert row is not None
        listed = list_transfers(conn, row[0], unreferred=not row[1])
        assert some in {str(t["transfer_id"]) for t in listed}
        assert all(row[0] in (t["from_institution"], t["to_institution"]) for t in listed)
        assert all(t["referred"] == row[1] for t in listed)
        assert "person_id" not in listed[0]
        assert list_transfers(conn, "439901-V999") == []


def test_two_workers_at_once_reach_the_digest_of_one(
    live: BatchProcessor, migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """Workers on different partitions change patients of the same persons concurrently."""
    events = shuffled_events(2, 120)
    records = as_records(events, topics)
    letters = KafkaDeadLetters(kafka_bootstrap, topics, "transfers")
    second = BatchProcessor(TRANSFERS, migrated_url, CODEC, letters)
    on_two_workers((live, second), records, 5)
    second.close()
    assert stored(migrated_url) == expected(events)
    with psycopg.connect(migrated_url) as conn:
        alone = generations.create(conn, TRANSFERS, "building")
    one = BatchProcessor(TRANSFERS, migrated_url, CODEC, letters, target=fixed_target(alone))
    one.process(records)
    one.close()
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, TRANSFERS, alone) == digest(conn, TRANSFERS, Generation("transfers", 1))


def test_a_rebuild_from_kafka_has_the_live_digest(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = shuffled_events(3, 60)
    with Publisher(kafka_bootstrap, topics) as publisher:
        for start in range(0, len(events), 40):  # acknowledged chunks, as hospitals send
            publisher.publish(events[start : start + 40], timeout=30)
        publisher.publish(events[:30], timeout=30)  # retries of already-published events

    def replay(switch: bool) -> Generation:
        return rebuild(
            TRANSFERS,
            bootstrap_servers=kafka_bootstrap,
            database_url=migrated_url,
            consortium_id=topics,
            dead_letters=KafkaDeadLetters(kafka_bootstrap, topics, "transfers"),
            batch_size=37,
            switch=switch,
        ).generation

    first = replay(switch=True)
    assert stored(migrated_url) == expected(events)
    second = replay(switch=False)
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, TRANSFERS, second) == digest(conn, TRANSFERS, first)
        with conn.cursor() as cur:
            assert generations.live(cur, "transfers") == first


def test_sweeps_from_the_timer_thread_do_not_tangle_with_batches(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    """faust runs batches and the clock sweep in different threads on one processor."""
    events = shuffled_events(4, 60)
    records = as_records(events, topics)
    stop = threading.Event()
    failures: list[BaseException] = []

    def sweep() -> None:
        while not stop.is_set():
            try:
                live.tick()
            except BaseException as exc:  # reported below
                failures.append(exc)
                return

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    batches = threading.Thread(
        target=lambda: [live.process(records[i : i + 3]) for i in range(0, len(records), 3)],
        daemon=True,
    )
    batches.start()
    batches.join(timeout=120)  # a guard against the hang this test is about, not a speed check
    stop.set()
    sweeper.join(timeout=30)
    assert not batches.is_alive() and not failures
    assert stored(migrated_url) == expected(events)


def _stay_event(kind: str, source: str, local: str, encounter: str, at: datetime) -> Event:
    make = examples.patient_admitted if kind == "PatientAdmitted" else examples.patient_discharged
    envelope = examples.envelope(kind, source=source, patient_local_id=local, occurred_at=at)
    envelope = envelope.model_copy(
        update={"event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}|{source}|{local}|{at}")}
    )
    update: dict[str, object] = {"envelope": envelope, "encounter_id": encounter}
    if kind == "PatientDischarged":
        update["discharge_disposition"] = DischargeDisposition.HOME
        update["transferred_to_institution"] = None
    event = make()
    return type(event).model_validate({**dict(event), **update})  # validated


def test_a_stay_resent_under_a_second_local_id_gives_one_transfer_in_any_order(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """The county re-sends stay E2 under its surviving id c2 after an HIS merge: whichever
    patient row PostgreSQL returns first, the earliest admission (c1's) is the transfer's."""
    t0, county, township = examples.OCCURRED_AT, examples.COUNTY_HOSPITAL, examples.TOWNSHIP
    person = examples.PERSON
    events = [
        examples.linked_to(person, township, "t1"),
        _stay_event("PatientAdmitted", township, "t1", "E1", t0 - timedelta(days=5)),
        _stay_event("PatientDischarged", township, "t1", "E1", t0),
        examples.linked_to(person, county, "c1"),
        examples.linked_to(person, county, "c2"),
        _stay_event("PatientAdmitted", county, "c1", "E2", t0 + timedelta(hours=3)),
        _stay_event("PatientAdmitted", county, "c2", "E2", t0 + timedelta(hours=3, minutes=5)),
    ]

    def rows(generation: Generation) -> list[tuple[object, ...]]:
        with psycopg.connect(migrated_url) as conn:
            return conn.execute(
                f"SELECT transfer_id, to_patient_local_id, admitted_at"
                f" FROM {generation.schema}.transfers"
            ).fetchall()

    letters = KafkaDeadLetters(kafka_bootstrap, topics, "transfers")
    results = []
    # The second order registers c2 first and admits c2 last: other row orders in PostgreSQL.
    for order in (events, [*events[:3], events[4], events[3], *events[5:][::-1]]):
        with psycopg.connect(migrated_url) as conn:
            generation = generations.create(conn, TRANSFERS, "building")
        worker = BatchProcessor(
            TRANSFERS, migrated_url, CODEC, letters, target=fixed_target(generation)
        )
        for record in as_records(order, topics):  # one batch each: every one re-derives
            assert worker.process([record]).applied == 1
        worker.close()
        results.append(rows(generation))
    [(_, local_id, admitted_at)] = results[0]
    assert (local_id, admitted_at) == ("c1", t0 + timedelta(hours=3))
    assert results[1] == results[0]


def test_merges_moves_and_links_to_retired_persons_in_any_order_and_concurrently(
    live: BatchProcessor, migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """The index's long ways round give the pure transfers — the transfers of its final
    persons — one worker or two at once, and the retired persons keep no transfers."""
    flows = shuffled_events(5, 120)
    events = with_index_history(flows, 5)
    assert sum(isinstance(e, PersonsMerged) for e in events) > 40
    want = expected(flows)
    assert len(want) > 40 and expected(events) == want
    records = as_records(events, topics)
    letters = KafkaDeadLetters(kafka_bootstrap, topics, "transfers")
    second = BatchProcessor(TRANSFERS, migrated_url, CODEC, letters)
    on_two_workers((live, second), records, 7)
    second.close()
    assert stored(migrated_url) == want
    finals = {str(e.person_id) for e in flows if isinstance(e, PersonLinked)}
    with psycopg.connect(migrated_url) as conn:
        persons = {r[0] for r in conn.execute("SELECT person_id FROM transfers.transfers")}
        assert persons <= finals
        alone = generations.create(conn, TRANSFERS, "building")
    # One worker, other batches (the events are shuffled: merges before or after their links).
    one = BatchProcessor(TRANSFERS, migrated_url, CODEC, letters, target=fixed_target(alone))
    for start in range(0, len(records), 11):
        one.process(records[start : start + 11])
    one.close()
    assert stored(migrated_url, alone) == want
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, TRANSFERS, alone) == digest(conn, TRANSFERS, Generation("transfers", 1))


def test_a_cycle_of_merges_stands_for_one_person_and_dead_letters_nothing(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    """Two indexes' decisions in one log (a re-indexed log, docs/empi.md) may retire A into B
    and B into A: both stand for the smaller id, and every later event of theirs applies."""
    flows = [e for flow in transfer_flows(9, 30) for e in flow]
    want = expected(flows)
    transfer = next(t for t in transfers_of(PERSONS, flows))
    person = uuid.UUID(transfer.person_id)
    other = uuid.uuid5(uuid.NAMESPACE_URL, f"the other index's person of {person}")
    later = transfer.admitted_at + timedelta(days=3)
    cycle = [
        examples.merged_into(other, person, later),
        examples.merged_into(person, other, later + timedelta(days=1), tag="back"),
        # A decision about one of the person's records after the cycle must still apply.
        examples.linked_to(
            person,
            transfer.to_institution,
            transfer.to_patient_local_id,
            later + timedelta(days=2),
            "again",
        ),
    ]
    events = flows + cycle
    assert set(expected(events)) == set(want)  # the same transfers, under one person
    dead = 0
    for record in as_records(events, topics):
        dead += live.process([record]).dead_lettered
    assert dead == 0
    assert stored(migrated_url) == expected(events)
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute(
            "SELECT person_id FROM transfers.transfers WHERE transfer_id = %s",
            (transfer.transfer_id,),
        ).fetchone()
    assert row == (str(min(person, other, key=str)),)


def _request(to: str, at: datetime, event_id: uuid.UUID) -> Event:
    """The township's request of one referral id, for its patient t1."""
    base = examples.referral_requested()
    envelope = examples.envelope(
        "ReferralRequested", source=examples.TOWNSHIP, patient_local_id="t1", occurred_at=at
    ).model_copy(update={"event_id": event_id})
    update = {
        "envelope": envelope,
        "from_institution": examples.TOWNSHIP,
        "to_institution": to,
        "direction": "UP",  # both are above the township centre
    }
    return type(base).model_validate({**dict(base), **update})  # validated


def test_a_referral_requested_twice_keeps_the_earliest_requests_route_in_any_order(
    migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    """The township asks the county first, then (a correction, same referral id) the TCM
    hospital; the first request has the greater event id. The referrals board shows the county
    route (the earliest request): so the township → county transfer is referred, whichever
    request the store reads first."""
    t0, county, township = examples.OCCURRED_AT, examples.COUNTY_HOSPITAL, examples.TOWNSHIP
    person = examples.PERSON
    first = _request(county, t0 - timedelta(hours=3), uuid.UUID(int=2**127))
    again = _request(examples.TCM_HOSPITAL, t0 - timedelta(hours=2), uuid.UUID(int=1))
    events = [
        examples.linked_to(person, township, "t1"),
        examples.linked_to(person, county, "c1"),
        _stay_event("PatientAdmitted", township, "t1", "E1", t0 - timedelta(days=5)),
        _stay_event("PatientDischarged", township, "t1", "E1", t0),
        _stay_event("PatientAdmitted", county, "c1", "E2", t0 + timedelta(hours=3)),
    ]
    want = expected([*events, first, again])
    assert list(want.values()) == [True]
    letters = KafkaDeadLetters(kafka_bootstrap, topics, "transfers")
    for order in ([first, again], [again, first]):
        with psycopg.connect(migrated_url) as conn:
            generation = generations.create(conn, TRANSFERS, "building")
        worker = BatchProcessor(
            TRANSFERS, migrated_url, CODEC, letters, target=fixed_target(generation)
        )
        for record in as_records([*events, *order], topics):  # one batch each
            assert worker.process([record]).applied == 1
        worker.close()
        assert stored(migrated_url, generation) == want


def _revisions(url: str) -> dict[str, bool]:
    """The outbox's latest revision per transfer: present or retracted."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT payload FROM transfers_g1.outbox ORDER BY seq").fetchall()
    revisions = [CODEC.decode_event(bytes(p)) for (p,) in rows]
    return {str(r.transfer_id): r.present for r in revisions}  # type: ignore[attr-defined]


def test_an_unlink_retracts_the_transfer_and_a_merge_brings_it_back_redelivery_included(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    """Linked as one person: a transfer. The index then tells the records apart (unlink): the
    transfer goes, its retraction is in the outbox. It merges the county record's new person
    into the first: the transfer is back. Redelivered and retried: the same digest."""
    t0, county, township = examples.OCCURRED_AT, examples.COUNTY_HOSPITAL, examples.TOWNSHIP
    person, other = examples.PERSON, examples.OTHER
    stays_ = [
        examples.linked_to(person, township, "t1"),
        examples.linked_to(person, county, "c1"),
        _stay_event("PatientAdmitted", township, "t1", "E1", t0 - timedelta(days=5)),
        _stay_event("PatientDischarged", township, "t1", "E1", t0),
        _stay_event("PatientAdmitted", county, "c1", "E2", t0 + timedelta(hours=3)),
    ]
    apart = [
        examples.unlinked_from(person, county, "c1", t0 + timedelta(days=1)),
        examples.linked_to(other, county, "c1", t0 + timedelta(days=1)),
    ]
    merged = [examples.merged_into(person, other, t0 + timedelta(days=2))]
    records = as_records([*stays_, *apart, *merged], topics)
    first, second, third = records[:5], records[5:7], records[7:]
    live.process(first)
    [transfer] = stored(migrated_url)
    assert _revisions(migrated_url) == {transfer: True}
    live.process(second)
    assert stored(migrated_url) == {} == expected([*stays_, *apart])
    assert _revisions(migrated_url) == {transfer: False}
    live.process(third)
    assert stored(migrated_url) == {transfer: False} == expected([*stays_, *apart, *merged])
    assert _revisions(migrated_url) == {transfer: True}
    with psycopg.connect(migrated_url) as conn:
        before = digest(conn, TRANSFERS, Generation("transfers", 1))
        owner = conn.execute("SELECT person_id FROM transfers.transfers").fetchone()
    assert owner == (str(person),)
    assert live.process(records).stale == len(records)
    retried = [replace(r, offset=r.offset + 10_000) for r in records]
    assert live.process(retried).applied == 0
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, TRANSFERS, Generation("transfers", 1)) == before


def test_a_late_request_makes_the_transfer_referred_and_a_later_cancellation_changes_nothing(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    """The transfer is derived unreferred; the township's request, read days later, makes it
    referred (a changed revision in the outbox); the request's cancellation afterwards leaves it
    referred (the referral's fate is its board's) and announces nothing."""
    t0, county, township = examples.OCCURRED_AT, examples.COUNTY_HOSPITAL, examples.TOWNSHIP
    person = examples.PERSON
    stays_ = [
        examples.linked_to(person, township, "t1"),
        examples.linked_to(person, county, "c1"),
        _stay_event("PatientAdmitted", township, "t1", "E1", t0 - timedelta(days=5)),
        _stay_event("PatientDischarged", township, "t1", "E1", t0),
        _stay_event("PatientAdmitted", county, "c1", "E2", t0 + timedelta(hours=3)),
    ]
    request = _request(county, t0 - timedelta(hours=2), uuid.uuid5(uuid.NAMESPACE_URL, "late"))
    base = examples.referral_cancelled()
    cancelled = type(base).model_validate(
        {
            **dict(base),
            "referral_id": request.referral_id,  # type: ignore[attr-defined]
            "envelope": examples.envelope(
                "ReferralCancelled",
                source=township,
                patient_local_id="t1",
                occurred_at=t0 + timedelta(days=1),
            ),
        }
    )
    records = as_records([*stays_, request, cancelled], topics)
    live.process(records[:5])
    [transfer] = stored(migrated_url)
    assert stored(migrated_url) == {transfer: False}
    live.process(records[5:6])
    assert stored(migrated_url) == {transfer: True} == expected([*stays_, request])
    outbox = "SELECT seq, payload FROM transfers_g1.outbox ORDER BY seq"
    with psycopg.connect(migrated_url) as conn:
        announced = conn.execute(outbox).fetchall()  # one row per transfer: its latest revision
    [(_, payload)] = announced
    latest = CODEC.decode_event(bytes(payload))
    assert (latest.referred, latest.present) == (True, True)  # type: ignore[attr-defined]
    live.process(records[6:])
    assert stored(migrated_url) == {transfer: True} == expected([*stays_, request, cancelled])
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute(outbox).fetchall() == announced  # no new revision (same sequence)
