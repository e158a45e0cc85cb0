"""Reading back what the processors wrote to Kafka."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from events.topics import DEAD_LETTER_TOPICS, EVENT_TOPICS, Family


def read_dead_letters(
    bootstrap: str, family: Family, consortium_id: str, expected: int
) -> list[Any]:
    """The messages of a family's dead-letter topic, every partition (waits for `expected`)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    topic = DEAD_LETTER_TOPICS[family].name(consortium_id)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found: list[Any] = []
    for _ in range(40):
        found.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        if len(found) >= expected:
            break
    consumer.close()
    return found


def topic_values(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every value a topic holds now, partition by partition, each in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    found: list[bytes] = []
    try:
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high == low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            for _ in range(high - low):
                message = consumer.poll(10)
                assert message is not None and message.error() is None
                found.append(message.value() or b"")
    finally:
        consumer.close()
    return found


def end_offsets(bootstrap: str, consortium_id: str) -> int:
    """How many messages the consortium's event topics hold."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets"})
    try:
        total = 0
        for spec in EVENT_TOPICS.values():
            topic = spec.name(consortium_id)
            for p in range(spec.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()
