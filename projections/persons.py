"""Who a local patient is: the patient index's link decisions and merges, folded (pure).

Decisions about one local patient arrive on the person topic keyed by *person*, so an unlink from
one person and the link to the next may be read in either order. The current person is therefore
a function of the set of decisions, not of their arrival order. Shared by every projection that
follows the index (the shared record, the transfers): one rule for "who is this patient now".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True, order=True)
class LinkFact:
    """One decision of the index about a local patient: linked to, or unlinked from, a person."""

    occurred_at: datetime
    event_id: UUID
    person_id: str
    linked: bool

    def to_json(self) -> list[Any]:
        """Compact JSON form."""
        return [self.occurred_at.isoformat(), str(self.event_id), self.person_id, self.linked]

    @classmethod
    def from_json(cls, data: list[Any]) -> LinkFact:
        """From to_json's form."""
        at, event_id, person, linked = data
        return cls(datetime.fromisoformat(at), UUID(event_id), str(person), bool(linked))


def standing_links(facts: Iterable[LinkFact]) -> list[LinkFact]:
    """The links not undone by an unlink from their person at or after them, oldest first."""
    facts = sorted(facts)
    return [
        f
        for f in facts
        if f.linked
        and not any(
            u.person_id == f.person_id and not u.linked and u.occurred_at >= f.occurred_at
            for u in facts
        )
    ]


def current_person(facts: Iterable[LinkFact]) -> str | None:
    """The person of the latest link not undone by an unlink from that person at or after it.

    The index unlinks from the old person and links to the new one with the cause's time, so a
    move reads as unlink(A)@t + link(B)@t → B in any order; a link back later wins again.
    """
    standing = standing_links(facts)
    return standing[-1].person_id if standing else None


@dataclass(frozen=True, slots=True, order=True)
class MergeFact:
    """One merge decision: the retired person now is the survivor."""

    occurred_at: datetime
    event_id: UUID
    survivor_id: str

    def to_json(self) -> list[Any]:
        """Compact JSON form."""
        return [self.occurred_at.isoformat(), str(self.event_id), self.survivor_id]

    @classmethod
    def from_json(cls, data: list[Any]) -> MergeFact:
        """From to_json's form."""
        at, event_id, survivor = data
        return cls(datetime.fromisoformat(at), UUID(event_id), str(survivor))


def survivor_of(facts: Iterable[MergeFact]) -> str | None:
    """The survivor of a retired person: the latest merge decision's (by time, then event id)."""
    ordered = sorted(facts)
    return ordered[-1].survivor_id if ordered else None


def resolve(survivors: Mapping[str, str], person_id: str) -> str:
    """The person a (possibly retired) person id stands for now, following merges to the end.

    The index never retires a survivor's survivor back into it, but a log re-indexed without its
    database may hold decisions of two indexes (docs/empi.md), so a cycle of merges is possible:
    every id of a cycle, and every chain into it, then stands for the cycle's smallest id. One
    answer per id, whichever id the walk starts from (the stores lock and re-derive by it)."""
    path = [person_id]
    seen = {person_id: 0}
    while (nxt := survivors.get(path[-1])) is not None:
        if nxt in seen:
            return min(path[seen[nxt] :])
        seen[nxt] = len(path)
        path.append(nxt)
    return path[-1]


def members(survivors: Mapping[str, str], person_id: str) -> frozenset[str]:
    """Every person id that resolves to the same person as this one (itself included)."""
    target = resolve(survivors, person_id)
    ids = {target, *survivors, *survivors.values()}
    return frozenset(p for p in ids if resolve(survivors, p) == target)


def merge_group(
    ids: Iterable[str], fetch: Callable[[Sequence[str]], Iterable[tuple[str, str]]]
) -> dict[str, str]:
    """The merges (retired → survivor) of the merge groups these ids belong to, and no others.

    `fetch(ids)` gives the stored merges that retire or survive any of the ids. `resolve` and
    `members` only follow merges within a group (the ids connected by merges in either
    direction), so for the ids asked about this map gives what every merge would give, while a
    store reads a few rows: one query per step outwards, usually one (no merge touches the ids).
    """
    found: dict[str, str] = {}
    seen = set(ids)
    frontier = sorted(seen)
    while frontier:
        rows = list(fetch(frontier))
        found.update(rows)
        reached = {p for row in rows for p in row} - seen
        seen |= reached
        frontier = sorted(reached)
    return found
