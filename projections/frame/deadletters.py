"""Dead letters go to their family's dead-letter topic, acknowledged by all in-sync replicas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Producer

from events.publisher import SAFE_PRODUCER_CONFIG, produce_acknowledged
from events.topics import DEAD_LETTER_TOPICS, EVENT_TOPICS
from projections.frame.records import DeadLetter

# Header values are bounded: an exception text must not blow up a message.
MAX_ERROR_BYTES = 4_000


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
        acknowledged, errors = produce_acknowledged(
            self._producer,
            (
                (
                    dead_letter_topic(letter.record.topic, self._consortium_id),
                    letter.record.value,
                    letter.record.key,
                    headers_of(letter, self._projection),
                )
                for letter in letters
            ),
            self._timeout,
        )
        if errors or acknowledged != len(letters):
            raise DeadLetterError(
                f"{acknowledged} of {len(letters)} dead letters acknowledged; errors: {errors[:3]}"
            )
