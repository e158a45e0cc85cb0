"""Settling entities into cells, and an in-memory ledger that runs it like the store (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from events.envelope import Event
from events.membership import Membership, load_membership
from projections.reporting.cells import Cell, CellKey, Delta, deltas, merge
from projections.reporting.entities import Entity, contributions, evolve, key_of, next_change
from projections.reporting.figures import FigureKey, figures_of_day, is_empty

EMPTY: dict[str, Any] = {}


def settle(
    entities: Iterable[Entity], clock: datetime | None, members: Membership
) -> tuple[list[Entity], dict[CellKey, Delta]]:
    """Each entity with its contributions at the clock marked applied, and the cells' deltas."""
    settled: list[Entity] = []
    changes = []
    for entity in entities:
        new = contributions(entity, clock, members)
        changes.append((entity.applied, new))
        settled.append(replace(entity, applied=new, due_at=next_change(entity, clock)))
    return settled, deltas(changes)


def days_of(changed: Iterable[CellKey]) -> list[date]:
    """The local days whose figures a set of changed cells touches."""
    return sorted({key.day for key in changed})


@dataclass
class Ledger:
    """The store's algorithm without PostgreSQL: the reference the tests compare with."""

    consortium: str
    members: Membership = field(default_factory=load_membership)
    entities: dict[str, Entity] = field(default_factory=dict)
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    figures: dict[FigureKey, dict[str, Any]] = field(default_factory=dict)
    clock: datetime | None = None
    seen: set[Any] = field(default_factory=set)
    # Every record as it was republished, in order: what a bureau would have read.
    published: list[tuple[FigureKey, dict[str, Any]]] = field(default_factory=list)

    def apply(self, batch: Sequence[Event]) -> None:
        """One batch: new facts, the clock, settling changed and due entities, new figures."""
        changed: dict[str, Entity] = {}
        for event in batch:
            key = key_of(event)
            if key is None or event.envelope.event_id in self.seen:
                continue
            self.seen.add(event.envelope.event_id)
            changed[key] = evolve(changed.get(key) or self.entities.get(key), event)
            at = event.envelope.occurred_at
            self.clock = at if self.clock is None or at > self.clock else self.clock
        self._settle(list(changed.values()))
        self.sweep()

    def sweep(self) -> None:
        """Settle entities that the clock alone changes."""
        if self.clock is None:
            return
        clock = self.clock
        due = [e for e in self.entities.values() if e.due_at is not None and e.due_at < clock]
        self._settle(due)

    def _settle(self, entities: list[Entity]) -> None:
        settled, changes = settle(entities, self.clock, self.members)
        self.entities.update((e.key, e) for e in settled)
        self.cells = merge(self.cells, changes)
        for day in days_of(changes):
            for key, record in figures_of_day(
                day, self.cells, self.members, self.consortium, list(self.figures)
            ).items():
                if self.figures.get(key, EMPTY) != record and not (
                    key not in self.figures and is_empty(record)
                ):
                    self.published.append((key, record))
                if is_empty(record):
                    self.figures.pop(key, None)
                else:
                    self.figures[key] = record
