"""A change of the index's logic, published: what the person topic must gain at a switch (pure).

A rebuild with other logic (weights, thresholds, comparisons) re-decides links under the same
decision ids (`<cause>|<n>`) with other content. The person topic keeps what the old logic said,
and every reader of it folds that (projections/persons.py: the latest standing link of a record,
the latest merge of a retired person). Relaying the new generation's decisions would not help: a
known id with other content is a reused event id to every consumer.

So the switch compares two folds by the same rule the readers use — what the topic holds
(`downstream`) and what the new generation decided (`new`) — and plans, per record and per retired
person whose outcome differs, fresh decisions that make the readers' fold equal the new one:

- a record's link: `PersonUnlinked` from every person it stands linked to on the topic except the
  new one, and `PersonLinked` to the new one (the new generation's own decision for it, copied:
  method, score, agreement). Time: the new decision's, or 1 ms after the latest the topic holds
  for the record, whichever is later, so it wins the readers' "latest" rule and stays as close
  to the cause as it can.
- a retired person's survivor: `PersonsMerged` (the new generation's own, copied), timed the same
  way against the topic's merges of that person.
- a person the topic has merged away that the new generation keeps apart cannot be un-merged:
  there is no event for it. Such persons are `stranded`, reported, and left as the topic has them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.envelope import Event
from events.person import PersonLinked, PersonsMerged, PersonUnlinked
from projections.persons import LinkFact, MergeFact, current_person, standing_links, survivor_of

LINK_DECISIONS = frozenset({"PersonLinked", "PersonUnlinked", "PersonsMerged"})
# The readers order by the envelope's occurred_at, kept in milliseconds (Avro timestamp-millis).
AFTER = timedelta(milliseconds=1)

Record = tuple[str, str]  # (institution, local id)


@dataclass
class Facts:
    """A log's link decisions folded per record and per retired person, as its readers fold them."""

    links: dict[Record, list[LinkFact]] = field(default_factory=dict)
    merges: dict[str, list[MergeFact]] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        """Fold one decision; other events change nothing."""
        at, event_id = event.envelope.occurred_at, event.envelope.event_id
        if isinstance(event, PersonLinked | PersonUnlinked):
            linked = isinstance(event, PersonLinked)
            fact = LinkFact(at, event_id, str(event.person_id), linked)
            self.links.setdefault((event.institution, event.local_id), []).append(fact)
        elif isinstance(event, PersonsMerged):
            merge = MergeFact(at, event_id, str(event.person_id))
            self.merges.setdefault(str(event.retired_person_id), []).append(merge)

    def extend(self, events: Iterable[Event]) -> None:
        """Fold decisions in any order (the fold does not depend on it)."""
        for event in events:
            self.add(event)

    def person_of(self, record: Record) -> str | None:
        """The person a record stands linked to, as a reader of these decisions says."""
        return current_person(self.links.get(record, ()))

    def survivor(self, retired: str) -> str | None:
        """The person a retired person id was last merged into, or None."""
        return survivor_of(self.merges.get(retired, ()))

    def standing(self, record: Record) -> list[str]:
        """Every person the record stands linked to (no later unlink from it), oldest first."""
        return list(dict.fromkeys(f.person_id for f in standing_links(self.links.get(record, ()))))

    def link_decision(self, record: Record) -> uuid.UUID | None:
        """The decision that made the record's present link (to copy), or None."""
        person = self.person_of(record)
        facts = [f for f in self.links.get(record, ()) if f.linked and f.person_id == person]
        return max(facts).event_id if facts else None

    def merge_decision(self, retired: str) -> uuid.UUID | None:
        """The decision that made the retired person's present survivor, or None."""
        facts = self.merges.get(retired, ())
        return max(facts).event_id if facts else None


@dataclass(frozen=True, slots=True)
class Relink:
    """A record to move: unlink it from `unlink_from` and, if `person` is set, link it there by
    a copy of the new generation's decision `decision`; all at `at`."""

    record: Record
    unlink_from: tuple[str, ...]
    person: str | None
    decision: uuid.UUID | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Remerge:
    """A retired person to merge into `person` by a copy of the new decision `decision`, at `at`."""

    retired: str
    person: str
    decision: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class Plan:
    """What the topic must gain, and the persons it merged away that cannot come back."""

    relinks: tuple[Relink, ...] = ()
    remerges: tuple[Remerge, ...] = ()
    stranded: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.relinks) + len(self.remerges)


def _latest(times: Iterable[datetime]) -> datetime | None:
    return max(times, default=None)


def _when(new_at: datetime | None, topic_latest: datetime | None) -> datetime:
    """The new decision's time, unless the topic holds one as late: then 1 ms after that."""
    if topic_latest is None:
        assert new_at is not None
        return new_at
    later = topic_latest + AFTER
    return later if new_at is None or new_at < later else new_at


def plan(downstream: Facts, new: Facts) -> Plan:
    """The decisions that make the readers' fold of `downstream` equal the fold of `new`."""
    remerges: list[Remerge] = []
    stranded: list[str] = []
    for retired in sorted(downstream.merges.keys() | new.merges.keys()):
        want, have = new.survivor(retired), downstream.survivor(retired)
        if want == have:
            continue
        decision = new.merge_decision(retired)
        if want is None or decision is None:
            stranded.append(retired)  # merged on the topic, kept apart now: no event undoes it
            continue
        merged_at = max(new.merges[retired]).occurred_at
        topic = _latest(m.occurred_at for m in downstream.merges.get(retired, ()))
        remerges.append(Remerge(retired, want, decision, _when(merged_at, topic)))
    relinks: list[Relink] = []
    for record in sorted(downstream.links.keys() | new.links.keys()):
        want, have = new.person_of(record), downstream.person_of(record)
        if want == have:
            continue
        decision = new.link_decision(record)
        new_at: datetime | None = None
        if decision is not None:
            new_at = next(f.occurred_at for f in new.links[record] if f.event_id == decision)
        topic = _latest(f.occurred_at for f in downstream.links.get(record, ()))
        others = tuple(p for p in downstream.standing(record) if p != want)
        relinks.append(Relink(record, others, want, decision, _when(new_at, topic)))
    return Plan(tuple(relinks), tuple(remerges), tuple(stranded))


def decisions_of(
    planned: Plan,
    templates: dict[uuid.UUID, Event],
    *,
    ids: Iterable[uuid.UUID],
    recorded_at: datetime,
    source: str,
) -> list[Event]:
    """The planned decisions as events, published as `source` (the index) and recorded at
    `recorded_at`, with fresh ids from `ids`: links and merges copy the new generation's decision
    (`templates`, by id: method, score, agreement, cause) at the planned time; unlinks say
    `UNKNOWN` (no reason of the enum says "the logic changed") and name the new person."""
    fresh = iter(ids)

    def envelope(event_type: str, person: str, at: datetime, cause: Event | None) -> object:
        return {
            "event_id": next(fresh),
            "event_type": event_type,
            "occurred_at": at,
            "recorded_at": max(recorded_at, at),
            "source": source,
            "patient_local_id": person,
            "correlation_id": cause.envelope.correlation_id if cause else None,
            "causation_id": cause.envelope.causation_id if cause else None,
        }

    events: list[Event] = []
    for remerge in planned.remerges:
        template = templates[remerge.decision]
        body = template.model_dump()
        body["envelope"] = envelope("PersonsMerged", remerge.person, remerge.at, template)
        events.append(PersonsMerged.model_validate(body))
    for relink in planned.relinks:
        institution, local_id = relink.record
        link = templates[relink.decision] if relink.decision is not None else None
        for person in relink.unlink_from:
            unlinked = {
                "envelope": envelope("PersonUnlinked", person, relink.at, link),
                "person_id": person,
                "institution": institution,
                "local_id": local_id,
                "reason": "UNKNOWN",
                "relinked_person_id": relink.person,
            }
            events.append(PersonUnlinked.model_validate(unlinked))
        if link is not None and relink.person is not None:
            body = link.model_dump()
            body["envelope"] = envelope("PersonLinked", relink.person, relink.at, link)
            events.append(PersonLinked.model_validate(body))
    return events
