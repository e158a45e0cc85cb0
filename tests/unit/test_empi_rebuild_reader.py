"""The index rebuild's reader and partitions added to the topics while it runs."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from projections.empi.rebuild import _Reader

TOPIC = "c.patient.v1"


class _Message:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> None:
        return None

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return b"v"


class _Consumer:
    """A log of 5 records per partition; serves what is assigned, in offset order."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.next = {tp.partition: tp.offset for tp in tps}

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.next.update({tp.partition: tp.offset for tp in tps})

    def consume(self, n: int, timeout: float) -> list[Any]:
        out = []
        for p in self.next:
            while self.next[p] < 5 and len(out) < n:
                out.append(_Message(p, self.next[p]))
                self.next[p] += 1
        return out


def _read(records: list[Any]) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)


def test_a_journal_naming_a_partition_added_after_the_rebuild_began_is_replayed() -> None:
    # The rebuild began with partition 0; the topic then grew, the live runner was restarted
    # (it reads new partitions from offset 0) and journaled a batch holding partition 1.
    reader = _Reader(_Consumer(), [(TOPIC, 0)])
    assert _read(reader.take({(TOPIC, 0): 2})) == [(0, 0), (0, 1)]
    assert _read(reader.take({(TOPIC, 0): 3, (TOPIC, 1): 2})) == [(0, 2), (1, 0), (1, 1)]


def test_the_reader_takes_up_every_partition_added_when_the_journal_names_one() -> None:
    consumer = _Consumer()
    reader = _Reader(consumer, [(TOPIC, 0)], lambda: [(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)])
    assert _read(reader.take({(TOPIC, 0): 2, (TOPIC, 1): 1})) == [(0, 0), (0, 1), (1, 0)]
    assert set(consumer.next) == {0, 1, 2}  # the other new one is read too, from 0
    taken = reader.take({(TOPIC, 0): 3, (TOPIC, 1): 2, (TOPIC, 2): 1})
    assert _read(taken) == [(0, 2), (1, 1), (2, 0)]
