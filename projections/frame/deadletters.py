"""Dead letters go to their family's dead-letter topic, acknowledged by all in-sync replicas."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Producer

from events.publisher import SAFE_PRODUCER_CONFIG, produce_acknowledged
from events.topics import DEAD_LETTER_TOPICS, EVENT_TOPICS
from projections.frame.records import DeadLetter

# Header values are bounded: an exception text must not blow up a message.
MAX_ERROR_BYTES = 4_000
# What a dead letter may weigh, key, value and headers together: below librdkafka's
# message.max.bytes (1,000,000), which also counts the record's framing. A record near that
# size plus the headers above would be refused for ever, and stop its projection with it.
MAX_DEAD_LETTER_BYTES = 990_000


class DeadLetterError(RuntimeError):
    """Kafka did not acknowledge every dead letter; the batch must not be committed."""


class DeadLetterSink(Protocol):
    """Where dead letters go; send returns only when every one is stored."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter or raise DeadLetterError."""
        ...


def dead_letter_topic(source_topic: str, consortium_id: str) -> str:
    """The dead-letter topic of the family whose event topic a record came from."""
    for family, spec in EVENT_TOPICS.items():
        if spec.name(consortium_id) == source_topic:
            return DEAD_LETTER_TOPICS[family].name(consortium_id)
    raise ValueError(f"{source_topic} is not an event topic of consortium {consortium_id}")


def fitted(
    letter: DeadLetter, projection: str
) -> tuple[bytes | None, list[tuple[str, str | bytes | None]]]:
    """The letter's value and headers, the value cut short when the whole would not fit.

    A cut value's full length and SHA-256 go into headers (`value_bytes`, `value_sha256`); the
    whole record stays in its source topic at `topic`/`partition`/`offset`."""
    headers = headers_of(letter, projection)
    value = letter.record.value
    if value is None:
        return value, headers
    weight = len(letter.record.key or b"") + sum(len(k) + len(v or b"") for k, v in headers)
    room = MAX_DEAD_LETTER_BYTES - weight - 200  # the two headers below
    if len(value) <= room:
        return value, headers
    digest = hashlib.sha256(value).hexdigest()
    headers += [("value_bytes", str(len(value)).encode()), ("value_sha256", digest.encode())]
    return value[: max(0, room)], headers


def headers_of(letter: DeadLetter, projection: str) -> list[tuple[str, str | bytes | None]]:
    """The headers that say where the record was and why it failed."""
    record = letter.record
    kept: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in record.headers]
    return [
        *kept,
        ("error", letter.error.encode()[:MAX_ERROR_BYTES]),
        ("topic", record.topic.encode()),
        ("partition", str(record.partition).encode()),
        ("offset", str(record.offset).encode()),
        ("projection", projection.encode()),
    ]


class KafkaDeadLetters:
    """A confluent-kafka producer of dead letters (acks=all, idempotent)."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        projection: str,
        timeout: float = 30.0,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from consortium.kafka_config import with_environment
        from infra.security import processor_principal

        # In secure mode the projection's processor principal writes its dead letters.
        own = with_environment(config, processor_principal(consortium_id, projection))
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            **SAFE_PRODUCER_CONFIG,
            **own,
        }
        self._producer = Producer(settings)
        self._consortium_id = consortium_id
        self._projection = projection
        self._timeout = timeout

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (every `send` already waited for it) and close the producer."""
        self._producer.flush(timeout)
        self._producer.close()

    def __enter__(self) -> KafkaDeadLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce every letter and wait until Kafka acknowledged all of them."""
        if not letters:
            return
        outgoing = []
        for letter in letters:
            value, headers = fitted(letter, self._projection)
            topic = dead_letter_topic(letter.record.topic, self._consortium_id)
            outgoing.append((topic, value, letter.record.key, headers))
        acknowledged, errors = produce_acknowledged(self._producer, outgoing, self._timeout)
        if errors or acknowledged != len(letters):
            raise DeadLetterError(
                f"{acknowledged} of {len(letters)} dead letters acknowledged; errors: {errors[:3]}"
            )
