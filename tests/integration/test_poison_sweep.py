"""Poison on every topic a processor reads ends in that family's dead-letter topic with its
reason, and the processor goes on past it (issue 8: bad input, everywhere); so does an event id
reused with other content, while a retry of the same record is a duplicate (docs/processing.md,
"Reused event ids"; the claim's property test is in test_reused_event_ids.py).

Each projection of the processors (and the patient index) gets, on each topic it reads: a
valid event, bytes without the Confluent magic byte, a frame naming a schema id nobody
registered, and a valid event again. Both poisons must be dead-lettered with topic, partition,
offset and the reason; the positions must move past all four records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from events.envelope import Event
from events.topics import Family, event_key, event_topic
from examples import EXAMPLES
from kafka_reads import read_dead_letters
from own_databases import own_database
from projections.frame.records import Record
from readers import CODEC, READER_IDS, READERS, Reader, applies, with_id

NO_MAGIC = b'{"event_type": "PatientRegistered"}'
UNKNOWN_SCHEMA = b"\x00\x00\x00\xff\xf0" + b"\x02\x04junk"


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


@pytest.mark.parametrize(("reader", "family"), READERS, ids=READER_IDS)
def test_poison_is_dead_lettered_with_its_reason_and_processing_goes_on(
    reader: str, family: Family, migrated: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    cid = fresh_consortium_id
    records = records_of(family, cid)
    step = Reader(reader, family, migrated, kafka_bootstrap, cid)
    try:
        assert step.process(records)[1] == 2
        moved_to = step.position(records[0].topic, 0)
    finally:
        step.close()
    assert moved_to == len(records)  # past both poisons: processing went on
    letters = read_dead_letters(kafka_bootstrap, family, cid, 2)
    assert sorted(m.value() for m in letters) == sorted([NO_MAGIC, UNKNOWN_SCHEMA])
    for letter in letters:
        headers = dict(letter.headers() or [])
        assert headers["topic"] == records[0].topic.encode() and headers["partition"] == b"0"
        assert headers["offset"] in (b"1", b"2")
        assert headers["error"].startswith(b"undecodable"), headers["error"]
        assert headers["projection"] == reader.encode() and headers["origin"] == b"t"


@pytest.mark.parametrize(("reader", "family"), READERS, ids=READER_IDS)
def test_a_reused_event_id_is_dead_lettered_and_a_retry_is_a_duplicate(
    reader: str, family: Family, migrated: str, kafka_bootstrap: str, fresh_consortium_id: str
) -> None:
    cid = fresh_consortium_id
    found = [e for e in (f() for f in EXAMPLES.values()) if e.family is family]
    example = next(e for e in found if applies(reader, e))
    first_id, second_id = uuid.uuid4(), uuid.uuid4()
    event, other = with_id(example, first_id), with_id(example, first_id, later=1)
    # A second id whose reuse comes in the same batch as its first record.
    fresh, fresh_other = with_id(example, second_id), with_id(example, second_id, later=2)
    topic = event_topic(family, cid)
    key = event_key(family, event.envelope.source, event.envelope.patient_local_id)
    values = [event, event, other, other, fresh, fresh_other]
    records = [
        Record(topic, 0, offset, key, CODEC.encode_event(e), (("origin", b"t"),))
        for offset, e in enumerate(values)
    ]
    step = Reader(reader, family, migrated, kafka_bootstrap, cid)
    try:
        assert step.process(records[:1]) == (1, 0)
        before = step.content()
        # The retry (same bytes) is a duplicate, both reuses are dead letters: the first stands.
        assert step.process(records[1:4]) == (1, 2)
        assert step.content() == before
        assert step.process(records[4:]) == (1, 1)  # the first of a batch wins, within it too
    finally:
        step.close()
    letters = read_dead_letters(kafka_bootstrap, family, cid, 3)
    assert sorted(dict(m.headers())["offset"] for m in letters) == [b"2", b"3", b"5"]
    for letter in letters:
        headers = dict(letter.headers())
        reused = second_id if headers["offset"] == b"5" else first_id
        assert headers["error"].startswith(f"event id {reused} was applied before".encode())
        assert headers["projection"] == reader.encode() and headers["origin"] == b"t"
        assert letter.value() == records[int(headers["offset"])].value
