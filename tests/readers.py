"""Every reader of every topic: each projection of the processors and the patient index."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import DEAD_LETTER_TOPICS, Family
from processors.wiring import PROJECTIONS
from projections.empi.batches import INDEXED, IndexBatches
from projections.empi.evaluation import evaluation_config
from projections.empi.store import EmpiStore
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.digest import digest
from projections.frame.records import Record

CODEC = Codec(Catalog.load())

READERS = [
    *((name, family) for name, p in PROJECTIONS.items() for family in p.families),
    *(("empi", family) for family in (Family.PATIENT, Family.PERSON)),
]
READER_IDS = [f"{r}-{f.value}" for r, f in READERS]


def applies(reader: str, event: Event) -> bool:
    """Whether the reader claims the event's id (the events it reads past are never claimed)."""
    if reader == "empi":
        return isinstance(event, INDEXED)
    projection = PROJECTIONS[reader]
    wanted = projection.event_types
    if wanted is not None and event.event_type not in wanted:
        return False
    return projection.key_of(event) is not None


def with_id(event: Event, event_id: uuid.UUID, later: int = 0) -> Event:
    """The event under another id; `later` seconds on its recorded_at make other content."""
    envelope = event.envelope.model_copy(
        update={
            "event_id": event_id,
            "recorded_at": event.envelope.recorded_at + timedelta(seconds=later),
        }
    )
    return event.model_copy(update={"envelope": envelope})


class Reader:
    """A reader's batch step, whichever kind, with what the test compares."""

    def __init__(
        self, reader: str, family: Family, url: str, bootstrap: str, consortium_id: str
    ) -> None:
        """The reader's step into the database at `url`; dead letters to the family's topic."""
        ensure_topics(bootstrap, consortium_id, specs=[DEAD_LETTER_TOPICS[family]])
        sink = KafkaDeadLetters(bootstrap, consortium_id, reader)
        self.name, self.url = reader, url
        self.index: IndexBatches | None = None
        self.frame: BatchProcessor | None = None
        if reader == "empi":
            self.index = IndexBatches(EmpiStore(evaluation_config(), CODEC), url, CODEC, sink)
        else:
            with psycopg.connect(url) as conn:
                generations.ensure_live(conn, PROJECTIONS[reader])
            self.frame = BatchProcessor(PROJECTIONS[reader], url, CODEC, sink)

    def process(self, records: list[Record]) -> tuple[int, int]:
        """(records applied or duplicate, records dead-lettered)."""
        if self.index is not None:
            applied = self.index.process(records)
            return applied.indexed, applied.dead_lettered
        assert self.frame is not None
        outcome = self.frame.process(records)
        return outcome.applied + outcome.duplicates, outcome.dead_lettered

    def position(self, topic: str, partition: int) -> int | None:
        """The stored next offset of a partition, if the reader has one."""
        if self.index is not None:
            return self.index.positions().get((topic, partition))
        with psycopg.connect(self.url) as conn:
            with conn.cursor() as cur:
                live = generations.live(cur, self.name)
            assert live is not None
            row = conn.execute(
                "SELECT next_offset FROM consumer_offsets WHERE projection = %s"
                " AND topic = %s AND partition = %s",
                (live.key, topic, partition),
            ).fetchone()
        return int(row[0]) if row else None

    def content(self) -> Any:
        """What the reader's readers see (the frame's digest; the index's claimed records)."""
        with psycopg.connect(self.url) as conn:
            if self.index is None:
                with conn.cursor() as cur:
                    live = generations.live(cur, self.name)
                assert live is not None
                return digest(conn, PROJECTIONS[self.name], live)
            records = conn.execute(
                "SELECT institution, local_id, person_id, demographics FROM empi.records"
                " ORDER BY 1, 2"
            ).fetchall()
            parked = conn.execute("SELECT event_id, event FROM empi.parked ORDER BY seq")
            return records, parked.fetchall()

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
        if self.frame is not None:
            self.frame.close()
