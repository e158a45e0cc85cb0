"""The reporting projection on the frame: effectively once, as the ledger, rebuildable."""

from __future__ import annotations

import json
import random
from typing import Any

import psycopg
import pytest

from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import event_topic
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor, fixed_target
from projections.frame.digest import digest
from projections.frame.records import DeadLetter, Record
from projections.reporting.ledger import Ledger
from projections.reporting.projection import reporting_projection
from projections.reporting.queries import consortium_figures, institution_figures, latest
from projections.reporting.synthetic import flows

CODEC = Codec(Catalog.load())
CONSORTIUM = "c1"


class NoDeadLetters:
    """A sink that refuses to be used: these events are all valid."""

    def send(self, letters: list[DeadLetter]) -> None:
        assert not letters, letters


def _records(events: list[Event]) -> list[Record]:
    """The events as they would sit on their topics: 3 partitions per family, in log order."""
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for event in events:
        topic = event_topic(event.family, CONSORTIUM)
        partition = hash(event.envelope.source) % 3
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        records.append(Record(topic, partition, offset, None, CODEC.encode_event(event)))
    return records


def _run(processor: BatchProcessor, records: list[Record], batch: int) -> None:
    for i in range(0, len(records), batch):
        processor.process(records[i : i + batch])
    processor.tick()


def _rebuild_equals(
    url: str, records: list[Record], live: generations.Generation, batch: int
) -> None:
    """A fresh store replaying the records into a building generation gives the live digest."""
    clean = reporting_projection(CONSORTIUM)
    with psycopg.connect(url) as conn:
        building = generations.create(conn, clean, "building")
    rebuilder = BatchProcessor(clean, url, CODEC, NoDeadLetters(), fixed_target(building))
    _run(rebuilder, records, batch)
    rebuilder.close()
    with psycopg.connect(url) as conn:
        assert digest(conn, clean, building) == digest(conn, clean, live)


def _stored(url: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT view, scope, grain, window_start, record FROM reporting.figures"
        ).fetchall()
    return {(v, s, g, w.isoformat()): r for v, s, g, w, r in rows}


@pytest.fixture
def events() -> list[Event]:
    found = [e for f in flows(17, 400) for e in f]
    random.Random(17).shuffle(found)
    return found


def test_the_projection_equals_the_ledger_and_a_rebuild_has_the_same_digest(
    scratch_database_url: str, events: list[Event]
) -> None:
    url = scratch_database_url
    apply_migrations(url)
    projection = reporting_projection(CONSORTIUM)
    with psycopg.connect(url) as conn:
        live = generations.ensure_live(conn, projection)
    records = _records(events)
    # Hospital retries: some events published twice, at later offsets.
    retried = _records([*events, *random.Random(3).sample(events, 60)])
    processor = BatchProcessor(projection, url, CODEC, NoDeadLetters())
    _run(processor, retried, 97)
    _run(processor, retried[:500], 50)  # redelivery after a restart: all stale
    processor.close()

    ledger = Ledger(CONSORTIUM)
    ledger.apply(events)
    expected = {
        (k.view, k.scope, k.grain.value, k.window_start.isoformat()): json.loads(
            json.dumps(
                {
                    **r,
                    "window_start": r["window_start"].isoformat(),
                    "window_end": r["window_end"].isoformat(),
                }
            )
        )
        for k, r in ledger.figures.items()
    }
    stored = _stored(url)
    assert set(expected) <= set(stored)
    assert {k: stored[k] for k in expected} == expected

    with psycopg.connect(url) as conn:
        outbox = conn.execute("SELECT count(*) FROM reporting.outbox").fetchone()
        # One pending record per key ever published (the latest change of each).
        assert outbox is not None and outbox[0] >= len(stored)
    _rebuild_equals(url, records, live, 1_000)


def test_queries_answer_by_consortium_institution_and_window(
    scratch_database_url: str, events: list[Event]
) -> None:
    url = scratch_database_url
    apply_migrations(url)
    projection = reporting_projection(CONSORTIUM)
    with psycopg.connect(url) as conn:
        generations.ensure_live(conn, projection)
    processor = BatchProcessor(projection, url, CODEC, NoDeadLetters())
    _run(processor, _records(events), 500)
    processor.close()
    with psycopg.connect(url) as conn:
        days = consortium_figures(conn, "DAY")
        assert days and all(r["scope"] == CONSORTIUM and r["grain"] == "DAY" for r in days)
        starts = [r["window_start"] for r in days]
        assert starts == sorted(starts)
        some = days[1]["window_start"]
        assert [r["window_start"] for r in consortium_figures(conn, "DAY", since=some)] == starts[
            1:
        ]
        hours = institution_figures(conn, "439901-C01", "hour")
        assert hours and {r["scope"] for r in hours} == {"439901-C01"}
        newest = latest(conn, "levels")
        assert {r["scope"] for r in newest} <= {
            "county_hospital",
            "specialist_hospital",
            "township_centre",
            "village_clinic",
        }
        with pytest.raises(ValueError, match="grain"):
            consortium_figures(conn, "WEEK")


def test_writers_sharing_days_and_a_failed_batch_change_nothing_the_cache_would_hide(
    scratch_database_url: str, events: list[Event]
) -> None:
    """Each store keeps the days it wrote in memory (projections/reporting/days.py). Two
    writers alternating batches over the same days, one of whose batches fails after its
    store wrote (the transaction rolls back, the batch is processed again), must give the
    figures of one clean writer: a kept day is used only while it is the last one committed."""
    url = scratch_database_url
    apply_migrations(url)
    first, second = reporting_projection(CONSORTIUM), reporting_projection(CONSORTIUM)
    with psycopg.connect(url) as conn:
        live = generations.ensure_live(conn, first)
    records = _records(events)
    store: Any = first.store
    saved, republish = store.save, store._republish
    fault = ""  # the fault armed for the current batch
    fired = 0

    def failing_save(*args: Any) -> None:
        nonlocal fault, fired
        saved(*args)
        if fault == "after":
            fault, fired = "", fired + 1
            raise RuntimeError("injected after the store wrote")

    def failing_republish(*args: Any) -> Any:
        nonlocal fault, fired
        if fault == "during":
            fault, fired = "", fired + 1
            raise RuntimeError("injected while the store writes: its days changed in memory")
        return republish(*args)

    store.save, store._republish = failing_save, failing_republish
    processors = [
        BatchProcessor(first, url, CODEC, NoDeadLetters()),
        BatchProcessor(second, url, CODEC, NoDeadLetters()),
    ]
    batches = [records[i : i + 61] for i in range(0, len(records), 61)]
    for i, batch in enumerate(batches):
        # Two batches each, so that a store's second batch finds the days it kept; faults in
        # the first writer's second batches (i = 5, 9), when its days are in memory. The
        # frame rolls the batch back and applies its records one by one (the fault does not
        # come again, so none is dead-lettered).
        processor = processors[(i // 2) % 2]
        fault = {5: "during", 9: "after"}.get(i, "")
        outcome = processor.process(batch)
        assert outcome.dead_lettered == 0
    for processor in processors:
        processor.tick()
        processor.close()
    assert fired == 2
    _rebuild_equals(url, records, live, 61)


def test_a_generation_made_before_day_revisions_gets_its_column(
    scratch_database_url: str, events: list[Event]
) -> None:
    """Generations created before `days.revision` existed keep working: the store adds the
    column on first use, and the figures equal a generation made with it."""
    url = scratch_database_url
    apply_migrations(url)
    old = reporting_projection(CONSORTIUM)
    with psycopg.connect(url) as conn:
        live = generations.ensure_live(conn, old)
        # As such a generation was: the readers' view over a days table of one column.
        conn.execute(f"ALTER TABLE {live.schema}.days DROP COLUMN revision CASCADE")
        conn.execute(f"CREATE VIEW reporting.days AS SELECT * FROM {live.schema}.days")
        conn.commit()
    records = _records(events)
    processor = BatchProcessor(old, url, CODEC, NoDeadLetters())
    _run(processor, records, 200)
    processor.close()
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'days'",
            (live.schema,),
        ).fetchall()
    assert ("revision",) in columns
    _rebuild_equals(url, records, live, 200)
