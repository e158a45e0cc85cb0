"""The canonical order of one batch: what the index reads first, whatever the arrival order."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from events.envelope import Event
from projections.frame.records import Record

_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Item:
    """A record of the batch and its event (None: not decoded).

    A record of a type the index does not read is not decoded: `recorded_at` is then its
    envelope's, read from the bytes (it places the record's successors as its event would).
    Neither: the bytes did not decode.
    """

    record: Record
    event: Event | None
    recorded_at: datetime | None = None

    @property
    def skipped(self) -> bool:
        """A record of another type, read past undecoded."""
        return self.event is None and self.recorded_at is not None


def canonical_order(items: Sequence[Item]) -> list[Item]:
    """Each partition in offset order, partitions merged by recorded_at (then topic, partition).

    Matching depends on order, so the order must depend only on the batch's content: a rebuild
    that replays the same batches then builds the same index. An undecodable record keeps its
    place in its partition (it sorts at its predecessor's time).
    """
    lanes: dict[tuple[str, int], list[Item]] = {}
    for item in items:
        lanes.setdefault((item.record.topic, item.record.partition), []).append(item)
    keyed: list[list[tuple[datetime, str, int, int]]] = []
    by_key: dict[tuple[str, int, int], Item] = {}
    for (topic, partition), lane in sorted(lanes.items()):
        at, keys = _EARLIEST, []
        for item in sorted(lane, key=lambda i: i.record.offset):
            offset = item.record.offset
            if (topic, partition, offset) in by_key:
                continue  # the same record twice in one batch is read once
            if item.event is not None:
                # Never earlier than its predecessor: a lane's keys stay sorted for the merge.
                at = max(at, item.event.envelope.recorded_at)
            elif item.recorded_at is not None:
                at = max(at, item.recorded_at)
            keys.append((at, topic, partition, offset))
            by_key[(topic, partition, offset)] = item
        keyed.append(keys)
    return [by_key[(t, p, o)] for _, t, p, o in heapq.merge(*keyed)]
