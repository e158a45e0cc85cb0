"""Poison on every topic a processor reads ends in that family's dead-letter topic with its
reason, and the processor goes on past it (issue 8: bad input, everywhere).

Each projection of the processors (and the patient index) gets, on each topic it reads: a
valid event, bytes without the Confluent magic byte, a frame naming a schema id nobody
registered, and a valid event again. Both poisons must be dead-lettered with topic, partition,
offset and the reason; the positions must move past all four records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import DEAD_LETTER_TOPICS, Family, event_key, event_topic
from examples import EXAMPLES
from kafka_reads import read_dead_letters
from own_databases import own_database
from processors.wiring import PROJECTIONS
from projections.empi.batches import IndexBatches
from projections.empi.evaluation import evaluation_config
from projections.empi.store import EmpiStore
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.deadletters import KafkaDeadLetters
from projections.frame.records import Record

CODEC = Codec(Catalog.load())
NO_MAGIC = b'{"event_type": "PatientRegistered"}'
UNKNOWN_SCHEMA = b"\x00\x00\x00\xff\xf0" + b"\x02\x04junk"
READERS = [
    *((name, family) for name, p in PROJECTIONS.items() for family in p.families),
    *(("empi", family) for family in (Family.PATIENT, Family.PERSON)),
]


def valid_events(family: Family) -> list[Event]:
    """Two valid events of the family (fresh ids), from the contract examples."""
    found = [factory() for factory in EXAMPLES.values() if factory().family is family]
    assert found, f"no example of {family}"
    first, second = found[0], found[-1]
    return [
        first.model_copy(
            update={"envelope": first.envelope.model_copy(update={"event_id": uuid.uuid4()})}
        ),
        second.model_copy(
            update={"envelope": second.envelope.model_copy(update={"event_id": uuid.uuid4()})}
        ),
    ]


def records_of(family: Family, consortium_id: str) -> list[Record]:
    topic = event_topic(family, consortium_id)
    good, later = valid_events(family)
    key = event_key(family, good.envelope.source, good.envelope.patient_local_id)
    values = [CODEC.encode_event(good), NO_MAGIC, UNKNOWN_SCHEMA, CODEC.encode_event(later)]
    return [
        Record(topic, 0, offset, key, value, (("origin", b"t"),))
        for offset, value in enumerate(values)
    ]


@pytest.fixture(scope="module")
def migrated(database_url: str) -> Iterator[str]:
    with own_database(database_url, "poison", migrate=True) as url:
        yield url


@pytest.mark.parametrize(("reader", "family"), READERS, ids=[f"{r}-{f.value}" for r, f in READERS])
def test_poison_is_dead_lettered_with_its_reason_and_processing_goes_on(
    reader: str, family: Family, migrated: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    cid = fresh_consortium_id
    ensure_topics(kafka_bootstrap, cid, specs=[DEAD_LETTER_TOPICS[family]])
    records = records_of(family, cid)
    sink = KafkaDeadLetters(kafka_bootstrap, cid, reader)
    if reader == "empi":
        batches = IndexBatches(EmpiStore(evaluation_config(), CODEC), migrated, CODEC, sink)
        try:
            outcome = batches.process(records)
            moved_to = batches.positions().get((records[0].topic, 0))
        finally:
            batches.close()
    else:
        projection = PROJECTIONS[reader]
        with psycopg.connect(migrated) as conn:
            live = generations.ensure_live(conn, projection)
        processor = BatchProcessor(projection, migrated, CODEC, sink)
        try:
            outcome = processor.process(records)
        finally:
            processor.close()
        with psycopg.connect(migrated) as conn:
            row = conn.execute(
                "SELECT next_offset FROM consumer_offsets WHERE projection = %s"
                " AND topic = %s AND partition = 0",
                (live.key, records[0].topic),
            ).fetchone()
        moved_to = row[0] if row else None
    assert outcome.dead_lettered == 2
    assert moved_to == len(records)  # past both poisons: processing went on
    letters = read_dead_letters(kafka_bootstrap, family, cid, 2)
    assert sorted(m.value() for m in letters) == sorted([NO_MAGIC, UNKNOWN_SCHEMA])
    for letter in letters:
        headers = dict(letter.headers() or [])
        assert headers["topic"] == records[0].topic.encode() and headers["partition"] == b"0"
        assert headers["offset"] in (b"1", b"2")
        assert headers["error"].startswith(b"undecodable"), headers["error"]
        assert headers["projection"] == reader.encode() and headers["origin"] == b"t"
