"""The shared record on the frame: any order, duplicates, concurrent workers, rebuilds, queries."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.derived import RepeatCheckDerived
from events.envelope import Event
from events.publisher import Publisher
from events.topics import event_topic
from infra.migrate import apply_migrations
from processors.rebuild import rebuild
from projections.frame import generations
from projections.frame.batch import BatchProcessor, fixed_target
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.generations import Generation
from projections.frame.records import Record
from projections.record import queries
from projections.record.access import AccessRequest, decide
from projections.record.checks import check_id
from projections.record.entries import EntryKind
from projections.record.memory import MemoryRecord
from projections.record.projection import RECORD
from projections.record.queries import default_table
from projections.record.synthetic import START, stories
from workers import on_two_workers

CODEC = Codec(Catalog.load())
LIVE = Generation("record", 1)


@pytest.fixture
def migrated_url(scratch_database_url: str) -> str:
    apply_migrations(scratch_database_url)
    return scratch_database_url


@pytest.fixture
def topics(kafka_bootstrap: str, fresh_consortium_id: str) -> str:
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    return fresh_consortium_id


@pytest.fixture
def live(migrated_url: str, kafka_bootstrap: str, topics: str) -> Iterator[BatchProcessor]:
    with psycopg.connect(migrated_url) as conn:
        generations.ensure_live(conn, RECORD)
    processor = BatchProcessor(
        RECORD, migrated_url, CODEC, KafkaDeadLetters(kafka_bootstrap, topics, "record")
    )
    yield processor
    processor.close()


def shuffled(seed: int, count: int) -> list[Event]:
    """Stories interleaved: links, clinical events and consents of all members in any order."""
    events = [e for s in stories(seed, count) for e in s]
    random.Random(seed).shuffle(events)
    return events


def as_records(events: list[Event], consortium_id: str, partitions: int = 6) -> list[Record]:
    """Events as records of their family's topic, partitioned by their key."""
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for event in events:
        key = event.kafka_key()
        tp = (event_topic(event.family, consortium_id), hash(key) % partitions)
        offsets[tp] = (offset := offsets.get(tp, 0)) + 1
        records.append(Record(tp[0], tp[1], offset, key, CODEC.encode_event(event)))
    return records


def stored(url: str, schema: str = "record") -> dict[str, Any]:
    """What the tables hold, in the shape MemoryRecord gives."""
    with psycopg.connect(url) as conn:
        links = conn.execute(
            f"SELECT institution, local_id, person_id FROM {schema}.local_patients"
        ).fetchall()
        results = conn.execute(
            "SELECT institution, kind, result_id, status, content, amendments"
            f" FROM {schema}.results"
        ).fetchall()
        orders = conn.execute(
            f"SELECT institution, order_id, status, results FROM {schema}.orders"
        ).fetchall()
        consents = conn.execute(
            f"SELECT consent_id, scope, expires_at, revoked_at FROM {schema}.consents"
        ).fetchall()
        merges = conn.execute(
            f"SELECT retired_person_id, survivor_person_id FROM {schema}.merged_persons"
        ).fetchall()
        checks = conn.execute(
            f"SELECT institution, order_id, ordered_at, flagged, reused FROM {schema}.repeat_checks"
        ).fetchall()
    return {
        "links": {(i, lid): p for i, lid, p in links},
        "results": {(i, k, r): (s, c, n) for i, k, r, s, c, n in results},
        "orders": {(i, o): (s, n) for i, o, s, n in orders},
        "consents": {c: (s.upper(), e, r) for c, s, e, r in consents},
        "survivors": dict(merges),
        "checks": {(i, o): (at, f, r) for i, o, at, f, r in checks},
    }


def expected(events: list[Event]) -> dict[str, Any]:
    m = MemoryRecord.of(events)
    return {
        "links": m.links,
        "results": {k: (r.status, r.values, r.amendments) for k, r in m.results().items()},
        "orders": {k: (o.status, o.results) for k, o in m.orders().items()},
        "consents": {
            k: (c.scope.value, c.expires_at, c.revoked_at) for k, c in m.consents().items()
        },
        "survivors": m.survivors,
        "checks": {
            k: (c.ordered_at, c.flagged, c.reused) for k, c in m.checks(default_table()).items()
        },
    }


def published_checks(url: str, schema: str = "record") -> dict[UUID, tuple[Any, ...]]:
    """The latest derived revision of each check waiting in the outbox (no relay ran)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT payload FROM {schema}.outbox ORDER BY seq").fetchall()
    latest: dict[UUID, tuple[Any, ...]] = {}
    for (payload,) in rows:
        event = CODEC.decode_event(bytes(payload))
        assert isinstance(event, RepeatCheckDerived)
        assert event.envelope.patient_local_id is None
        latest[event.check_id] = (event.present, event.ordered_at, event.flagged, event.reused)
    return latest


def test_batches_in_any_order_with_redelivery_give_the_pure_record(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    events = shuffled(1, 30)
    records = as_records(events, topics)
    for start in range(0, len(records), 29):
        outcome = live.process(records[start : start + 29])
        assert outcome.dead_lettered == 0
    want = expected(events)
    assert want["survivors"] and want["results"] and want["consents"]  # the story has them all
    flags = [f for _, f, _ in want["checks"].values()]
    assert any(flags) and not all(flags)  # checked orders, flagged and not
    assert stored(migrated_url) == want
    # What reporting will read: every checked order's latest revision, and nothing else present.
    published = published_checks(migrated_url)
    assert {k: v[1:] for k, v in published.items() if v[0]} == {
        check_id(*k): v for k, v in want["checks"].items()
    }
    with psycopg.connect(migrated_url) as conn:
        before = digest(conn, RECORD, LIVE)
    assert live.process(records).stale == len(records)  # Kafka redelivers
    retried = [replace(r, offset=r.offset + 10_000) for r in records[:60]]
    assert live.process(retried).applied == 0  # a hospital retries
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, RECORD, LIVE) == before


def test_queries_agree_with_the_pure_record(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    events = shuffled(2, 24)
    live.process(as_records(events, topics))
    memory, table = MemoryRecord.of(events), default_table()
    now = START + timedelta(days=6)
    persons = sorted({p for p in memory.links.values() if p} - set(memory.survivors))
    flagged = avoided = 0
    kinds: set[str] = set()
    with psycopg.connect(migrated_url) as conn:
        for person in persons:
            page = queries.timeline(conn, person, limit=1000)
            assert {e.entry_id for e in page.entries} == memory.timeline_ids(person)
            kinds |= {str(e.kind) for e in page.entries}
            assert page.next_cursor is None
            got = {(c.consent.consent_id, c.state) for c in queries.consents(conn, person, now)}
            assert got == {(c.consent_id, c.state_at(now)) for c in memory.person_consents(person)}
            recognised = queries.recognizable_results(conn, person, now, table)
            assert [(r.prior, r.test) for r in recognised] == [
                (r.prior, r.test) for r in memory.recognizable(person, table, now)
            ]
            repeats = queries.repeats_of(conn, person, table)
            assert repeats == memory.repeats(person, table)
            flagged += len(repeats)
            avoided += sum(r.avoided for r in repeats)
            inputs = queries.access_inputs(conn, person)
            assert sorted(inputs.referrals, key=str) == sorted(
                memory.person_referrals(person), key=str
            )
        checks = conn.execute("SELECT flagged, reused FROM record.repeat_checks").fetchall()
    assert flagged > 0 and 0 < avoided < flagged
    # The published checks flag exactly the person reads' possible repeats.
    assert (sum(f for f, _ in checks), sum(r for _, r in checks)) == (flagged, avoided)
    # Encounters, diagnoses, orders, lab results, imaging reports, referrals, transfers, consents.
    assert kinds == {k.value for k in EntryKind}
    assert len(checks) > flagged


def test_paging_walks_the_whole_timeline_once(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    events = [e for s in stories(3, 3) for e in s]
    live.process(as_records(events, topics))
    person = next(p for p in MemoryRecord.of(events).links.values() if p)
    with psycopg.connect(migrated_url) as conn:
        whole = queries.timeline(conn, person, limit=1000).entries
        seen: list[queries.TimelineEntry] = []
        cursor: str | None = None
        while True:
            page = queries.timeline(conn, person, cursor=cursor, limit=4)
            seen.extend(page.entries)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert len(whole) > 8 and seen == list(whole)
    assert [e.at for e in whole] == sorted((e.at for e in whole), reverse=True)


def test_two_workers_at_once_reach_the_digest_of_one(
    live: BatchProcessor, migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = shuffled(4, 30)
    records = as_records(events, topics)
    letters = KafkaDeadLetters(kafka_bootstrap, topics, "record")
    second = BatchProcessor(RECORD, migrated_url, CODEC, letters)
    on_two_workers((live, second), records, 7)
    second.close()
    assert stored(migrated_url) == expected(events)
    with psycopg.connect(migrated_url) as conn:
        alone = generations.create(conn, RECORD, "building")
    one = BatchProcessor(RECORD, migrated_url, CODEC, letters, target=fixed_target(alone))
    one.process(records)
    one.close()
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, RECORD, alone) == digest(conn, RECORD, LIVE)


def test_a_rebuild_from_kafka_has_the_live_digest(
    live: BatchProcessor, migrated_url: str, kafka_bootstrap: str, topics: str
) -> None:
    events = shuffled(5, 20)
    with Publisher(kafka_bootstrap, topics) as publisher:
        for start in range(0, len(events), 50):
            publisher.publish(events[start : start + 50], timeout=30)
        publisher.publish(events[:25], timeout=30)  # retries of already-published events
    live.process(as_records(events, topics))  # the live worker, fed separately
    rebuilt = rebuild(
        RECORD,
        bootstrap_servers=kafka_bootstrap,
        database_url=migrated_url,
        consortium_id=topics,
        dead_letters=KafkaDeadLetters(kafka_bootstrap, topics, "record"),
        batch_size=41,
        switch=False,
    ).generation
    with psycopg.connect(migrated_url) as conn:
        assert digest(conn, RECORD, rebuilt) == digest(conn, RECORD, LIVE)
    assert stored(migrated_url, rebuilt.schema) == expected(events)


def test_access_follows_consent_referral_and_break_glass(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    events = shuffled(6, 12)
    live.process(as_records(events, topics))
    memory = MemoryRecord.of(events)
    with psycopg.connect(migrated_url) as conn:
        for person in sorted({p for p in memory.links.values() if p} - set(memory.survivors)):
            inputs = queries.access_inputs(conn, person)
            for now in (START + timedelta(days=d) for d in (0, 3, 20, 90)):
                request = AccessRequest("439901-S01", "439901-C01", now)
                decision = decide(request, inputs)
                consent = [
                    c
                    for c in memory.person_consents(person)
                    if c.active_at(now) and c.covers("439901-S01", request.purpose)
                ]
                assert decision.allowed == bool(consent)
                glass = decide(replace(request, break_glass_reason="昏迷急救"), inputs)
                assert glass.allowed and (glass.flagged or bool(consent))


def test_an_amended_result_keeps_its_whole_history(
    live: BatchProcessor, migrated_url: str, topics: str
) -> None:
    events = shuffled(3, 24)
    live.process(as_records(events, topics))
    statements: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        result_id = getattr(event, "result_id", None) or getattr(event, "report_id", None)
        if event.family.value == "result" and result_id is not None:
            statements.setdefault((event.envelope.source, result_id), []).append(event)
    amended = {k: v for k, v in statements.items() if len(v) > 1}
    assert amended, "the stories amend some results"
    with psycopg.connect(migrated_url) as conn:
        for (institution, result_id), made in amended.items():
            history = queries.result_history(conn, institution, result_id)
            # Every statement stays, the report and each amendment, oldest first.
            first = min(made, key=lambda e: (e.envelope.occurred_at, str(e.envelope.event_id)))
            assert len(history) == len(made)
            assert sorted(h.event_type for h in history) == sorted(e.event_type for e in made)
            assert history[0].event_type == first.event_type
