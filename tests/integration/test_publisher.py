"""The Publisher against a real broker: nothing lost, order per key kept, failures reported."""

from __future__ import annotations

import random
import re
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from consortium.topics import drop_topics, ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.envelope import Event
from events.publisher import Delivery, Publisher, PublishError
from events.topics import EVENT_TOPICS, Family, event_topic
from examples import EXAMPLES

TRACEPARENT = re.compile(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def mixed_events(count: int, seed: int = 7) -> list[Event]:
    """Valid events of every type for a few hundred patients, with fresh ids."""
    rng = random.Random(seed)
    types = sorted(EXAMPLES)
    events: list[Event] = []
    for _ in range(count):
        event = EXAMPLES[rng.choice(types)]()
        data = event.model_dump()
        old_local_id = event.envelope.patient_local_id
        # Identity decisions name their person in the envelope; they keep theirs.
        if old_local_id is not None and event.family is not Family.PERSON:
            # The local id may also stand in the body (e.g. the surviving id of a merge).
            new_local_id = f"P{rng.randrange(300):05d}"
            data = {k: new_local_id if v == old_local_id else v for k, v in data.items()}
            data["envelope"]["patient_local_id"] = new_local_id
        data["envelope"]["event_id"] = uuid.UUID(int=rng.getrandbits(128))
        events.append(type(event).model_validate(data))
    return events


def consume_all(bootstrap: str, topics: list[str], group: str, expected: int) -> list[object]:
    """Read from the beginning until `expected` messages arrived (or a generous time passed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    messages: list[object] = []
    try:
        for _ in range(600):
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            messages.extend(m for m in batch if m.error() is None)
            if len(messages) >= expected:
                # One more poll shows that nothing beyond what was published arrives.
                messages.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
                break
    finally:
        consumer.close()
    return messages


def test_ten_thousand_mixed_events_come_back_whole_and_in_order_per_key(
    kafka_bootstrap: str, fresh_consortium_id: str, fresh_group: str
) -> None:
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    events = mixed_events(10_000)
    codec = Codec(Catalog.load())
    with Publisher(kafka_bootstrap, fresh_consortium_id, codec=codec) as publisher:
        deliveries: list[Delivery] = []
        for start in range(0, len(events), 1000):
            deliveries.extend(publisher.publish(events[start : start + 1000]))
    assert [d.event_id for d in deliveries] == [e.envelope.event_id for e in events]
    assert len({(d.topic, d.partition, d.offset) for d in deliveries}) == len(events)

    topics = [spec.name(fresh_consortium_id) for spec in EVENT_TOPICS.values()]
    messages = consume_all(kafka_bootstrap, topics, fresh_group, len(events))
    # Kafka keeps order per key within a topic: one patient, one institution, one family.
    consumed: dict[tuple[str, bytes], list[uuid.UUID]] = defaultdict(list)
    by_id = {e.envelope.event_id: e for e in events}
    for message in messages:
        event = codec.decode_event(message.value())  # type: ignore[attr-defined]
        assert event == by_id[event.envelope.event_id]
        headers = dict(message.headers())  # type: ignore[attr-defined]
        assert headers["event_type"] == event.event_type.encode()
        assert headers["source"] == event.envelope.source.encode()
        assert int(headers["schema_id"]) == int.from_bytes(message.value()[1:5], "big")  # type: ignore[attr-defined]
        assert TRACEPARENT.match(headers["traceparent"])
        # A patient's events at one member share a key; a derived fact is keyed by its entity.
        assert message.key() == event.kafka_key()  # type: ignore[attr-defined]
        consumed[message.topic(), message.key()].append(event.envelope.event_id)  # type: ignore[attr-defined]

    assert sum(len(ids) for ids in consumed.values()) == len(events), "lost or duplicated"
    published: dict[tuple[str, bytes], list[uuid.UUID]] = defaultdict(list)
    for event in events:
        published[event_topic(event.family, fresh_consortium_id), event.kafka_key()].append(
            event.envelope.event_id
        )
    assert consumed == published


def test_topic_creation_is_idempotent(kafka_bootstrap: str, fresh_consortium_id: str) -> None:
    first = ensure_topics(kafka_bootstrap, fresh_consortium_id)
    second = ensure_topics(kafka_bootstrap, fresh_consortium_id)
    assert all(o.created for o in first)
    assert not any(o.created for o in second)
    assert [o.name for o in first] == [o.name for o in second]


def test_dropping_a_throwaway_consortium_drops_its_topics_only(kafka_bootstrap: str) -> None:
    gone, kept = "t" + uuid.uuid4().hex[:10], "t" + uuid.uuid4().hex[:10]
    # One consortium id is a prefix of the other's name: only the dot ends a prefix.
    specs = [EVENT_TOPICS[Family.PATIENT]]
    ensure_topics(kafka_bootstrap, gone, specs=specs)
    ensure_topics(kafka_bootstrap, kept, specs=specs)
    ensure_topics(kafka_bootstrap, gone + "x", specs=specs)
    assert drop_topics(kafka_bootstrap, [gone]) == [event_topic(Family.PATIENT, gone)]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    left = set(admin.list_topics(timeout=10).topics)
    assert event_topic(Family.PATIENT, kept) in left
    assert event_topic(Family.PATIENT, gone + "x") in left
    assert drop_topics(kafka_bootstrap, []) == []
    drop_topics(kafka_bootstrap, [kept, gone + "x"])


def test_unreachable_kafka_is_an_error_naming_every_unstored_event() -> None:
    events = mixed_events(5)
    # Nothing listens on port 1; the publisher must fail, never report success.
    with Publisher("127.0.0.1:1", "nowhere", config={"message.timeout.ms": 2000}) as publisher:
        with pytest.raises(PublishError) as raised:
            publisher.publish(events, timeout=5.0)
        publisher._producer.purge()  # drop what is still queued so close() returns at once
    assert raised.value.stored == []
    assert set(raised.value.failed) == {e.envelope.event_id for e in events}
