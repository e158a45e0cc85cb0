"""The record's aggregates for the frame: local patients and retired persons (pure).

Clinical events are keyed by (source institution, local patient id) and add entries to that local
patient; the index's link decisions set who the local patient is; a merge retires a person into
another. A person's timeline is the join links → entries, made when it is read, so a link, unlink
or merge re-projects every timeline it touches without rewriting any entry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from events.envelope import Event
from events.person import PersonLinked, PersonsMerged, PersonUnlinked
from projections.persons import LinkFact, MergeFact, current_person, survivor_of
from projections.record.entries import CLINICAL_TYPES, Entry, entries_of

PATIENT, PERSON = "patient", "person"
# (PATIENT, institution, local id) or (PERSON, retired person id, ""): sortable, one lock order.
RecordKey = tuple[str, str, str]
LINK_TYPES = frozenset({"PersonLinked", "PersonUnlinked", "PersonsMerged"})
EVENT_TYPES = CLINICAL_TYPES | LINK_TYPES


@dataclass(frozen=True, slots=True)
class LocalPatient:
    """A member's local patient: its link decisions, and the entries this batch adds."""

    institution: str
    local_id: str
    links: tuple[LinkFact, ...] = ()
    added: tuple[Entry, ...] = ()  # stored by the store; entries of earlier batches stay there

    @property
    def person_id(self) -> str | None:
        """The person the index links this record to now, or None."""
        return current_person(self.links)


@dataclass(frozen=True, slots=True)
class RetiredPerson:
    """A person the index merged into another: its merge decisions."""

    person_id: str
    merges: tuple[MergeFact, ...] = ()

    @property
    def survivor_id(self) -> str | None:
        """The person it now is."""
        return survivor_of(self.merges)


Aggregate = LocalPatient | RetiredPerson


def key_of(event: Event) -> RecordKey | None:
    """The aggregate an event belongs to, or None when the record keeps nothing of it."""
    match event:
        case PersonLinked() | PersonUnlinked():
            return (PATIENT, event.institution, event.local_id)
        case PersonsMerged():
            return (PERSON, str(event.retired_person_id), "")
    env = event.envelope
    if event.event_type not in CLINICAL_TYPES or env.patient_local_id is None:
        return None
    return (PATIENT, env.source, env.patient_local_id)


def evolve(aggregate: Aggregate | None, event: Event) -> Aggregate:
    """The aggregate after one more event; an event id already applied changes nothing."""
    key = key_of(event)
    if key is None:
        raise TypeError(f"the shared record keeps nothing of {event.event_type}")
    env = event.envelope
    if isinstance(event, PersonsMerged):
        retired = aggregate if isinstance(aggregate, RetiredPerson) else RetiredPerson(key[1])
        if any(m.event_id == env.event_id for m in retired.merges):
            return retired
        merge = MergeFact(env.occurred_at, env.event_id, str(event.person_id))
        return replace(retired, merges=tuple(sorted((*retired.merges, merge))))
    patient = aggregate if isinstance(aggregate, LocalPatient) else LocalPatient(key[1], key[2])
    if isinstance(event, PersonLinked | PersonUnlinked):
        if any(f.event_id == env.event_id for f in patient.links):
            return patient
        linked = isinstance(event, PersonLinked)
        fact = LinkFact(env.occurred_at, env.event_id, str(event.person_id), linked)
        return replace(patient, links=tuple(sorted((*patient.links, fact))))
    if any(e.event_id == env.event_id for e in patient.added):
        return patient
    return replace(patient, added=(*patient.added, *entries_of(event)))
