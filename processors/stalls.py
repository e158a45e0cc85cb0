"""Which assigned partitions stand still behind their log end: the stall watch of a worker.

faust-streaming can stop fetching one partition of a worker while the rest flow (faust-streaming
#471, #175, #640; docs/reliability.md, "A worker stops short of the log end"). Nothing is lost
(positions are in PostgreSQL), but the projection stays behind until something moves the
partition. This is the bookkeeping of the watch that notices: pure, fed by the worker's timer
with the stored positions and the log ends, and by its agent with the records it was handed.

A partition stalls when it is behind its log end and for `after_s` seconds neither its stored
position moved nor a record of it reached the agent. No verdict is given while the agent is
inside a batch: a slow batch, or PostgreSQL away, is not a fetch stall. Each report of the same
stall climbs one rung of the remedies, and each rung waits one `after_s` longer than the one
before (a rebalance may take a while on a loaded machine); any progress starts the partition
again at rung 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)

RESEEK, REJOIN, RESTART = 0, 1, 2
"""The remedies, in order: seek the partition to its stored position and resume it, then ask
the group to rebalance, then leave the process (the supervisor starts it again)."""


@dataclass
class _Watched:
    stored: int
    quiet_since: float
    rung: int = 0


@dataclass
class StallWatch(Generic[P]):
    """Partitions behind their log end with no progress for `after_s` seconds, and their rung."""

    after_s: float
    _watched: dict[P, _Watched] = field(default_factory=dict)
    _handed: set[P] = field(default_factory=set)
    _busy: bool = False

    def handed(self, partitions: Iterable[P]) -> None:
        """The agent was given records of these partitions."""
        self._handed.update(partitions)

    def busy(self, busy: bool) -> None:
        """The agent started (True) or finished (False) a batch."""
        self._busy = busy

    def rebalanced(self, now: float) -> None:
        """The group rebalanced, which seeks every partition again: quiet clocks start anew
        (the rungs stay, so a stall that outlives a rebalance climbs on)."""
        for watched in self._watched.values():
            watched.quiet_since = now

    def observe(
        self, now: float, stored: Mapping[P, int], ends: Mapping[P, int]
    ) -> list[tuple[P, int]]:
        """The stalled partitions among `ends` (the assigned ones), each with its remedy rung."""
        handed, self._handed = self._handed, set()
        stalled: list[tuple[P, int]] = []
        for gone in self._watched.keys() - ends.keys():
            del self._watched[gone]
        for tp, end in ends.items():
            position = stored.get(tp, 0)
            watched = self._watched.get(tp)
            if position >= end:
                self._watched.pop(tp, None)
            elif watched is None or watched.stored != position or tp in handed:
                self._watched[tp] = _Watched(position, now)
            elif self._busy:
                continue  # no verdict while a batch runs: it may be the slow one
            elif now - watched.quiet_since >= self.after_s * (watched.rung + 1):
                stalled.append((tp, watched.rung))
                watched.rung += 1
                watched.quiet_since = now
        return stalled
