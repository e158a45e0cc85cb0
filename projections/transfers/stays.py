"""A local patient's stays, identity and referrals as facts, and the transfers they imply (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from events.encounter import DischargeDisposition, PatientAdmitted, PatientDischarged
from events.envelope import Event
from events.referral import ReferralEvent, ReferralRequested
from projections.persons import LinkFact, MergeFact, current_person, resolve, survivor_of
from projections.transfers.persons import LocalPatient, PersonIds

# Documented in docs/referrals.md ("Transfers").
TRANSFER_WINDOW = timedelta(hours=48)
REFERRAL_LOOKBACK = timedelta(days=30)
# Members' clocks differ: an admission may be stamped a little before the discharge it follows.
CLOCK_TOLERANCE = timedelta(hours=1)
_TRANSFER_IDS = uuid.UUID("6a1f3c52-0d4e-4f7b-9a86-3b2c1d0e5f47")

IDENTIFIED, ADMITTED, DISCHARGED, REFERRAL = "IDENTIFIED", "ADMITTED", "DISCHARGED", "REFERRAL"
UNLINKED, MERGED = "UNLINKED", "MERGED"
# The institution of a merge's pseudo-patient (MERGES, retired person id): a member code is never
# empty (the contracts' Text), so no member's patient has this key. Its facts are the merges.
MERGES = ""


@dataclass(frozen=True, slots=True)
class Fact:
    """What the projection keeps of one event about a local patient."""

    kind: str
    event_id: UUID
    at: datetime
    subject: str | None  # the person id, encounter id or referral id the fact is about
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, name: str) -> str | None:
        """One detail, or None."""
        return dict(self.details).get(name)

    def to_json(self) -> list[Any]:
        """A compact JSON-ready form."""
        return [self.kind, str(self.event_id), self.at.isoformat(), self.subject, self.details]

    @classmethod
    def from_json(cls, data: list[Any]) -> Fact:
        """The fact back from to_json's form."""
        kind, event_id, at, subject, details = data
        pairs = tuple((str(k), str(v)) for k, v in details)
        return cls(kind, UUID(event_id), datetime.fromisoformat(at), subject, pairs)


@dataclass(frozen=True, slots=True)
class Patient:
    """A member's local patient: every distinct relevant event, in (at, event_id) order."""

    institution: str
    local_id: str
    facts: tuple[Fact, ...] = ()

    @property
    def key(self) -> LocalPatient:
        """(institution, local id)."""
        return (self.institution, self.local_id)

    @property
    def is_merge(self) -> bool:
        """Whether this is a merge's pseudo-patient (its local id is the retired person id)."""
        return self.institution == MERGES

    @property
    def person_id(self) -> str | None:
        """The person the identity statements name now (projections/persons.current_person:
        order-independent); a merge's pseudo-patient is nobody's patient."""
        if self.is_merge:
            return None
        return current_person(
            LinkFact(f.at, f.event_id, f.subject, f.kind == IDENTIFIED)
            for f in self.facts
            if f.kind in (IDENTIFIED, UNLINKED) and f.subject is not None
        )

    @property
    def survivor_id(self) -> str | None:
        """For a merge's pseudo-patient, the person the retired one now is (the latest merge)."""
        return survivor_of(
            MergeFact(f.at, f.event_id, f.subject)
            for f in self.facts
            if f.kind == MERGED and f.subject is not None
        )

    @property
    def referral_ids(self) -> frozenset[UUID]:
        """Referrals this patient's member took part in for this patient (either side)."""
        return frozenset(UUID(f.subject) for f in self.facts if f.kind == REFERRAL and f.subject)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a referral went, from its request."""

    referral_id: UUID
    from_institution: str
    to_institution: str
    requested_at: datetime
    event_id: UUID


@dataclass(frozen=True, slots=True)
class Transfer:
    """A discharge at one member followed by the same person's admission at another."""

    transfer_id: UUID
    person_id: str
    from_institution: str
    from_patient_local_id: str
    from_encounter_id: str
    discharged_at: datetime
    discharge_disposition: str
    to_institution: str
    to_patient_local_id: str
    to_encounter_id: str
    admitted_at: datetime
    admission_source: str
    referral_id: UUID | None

    @property
    def referred(self) -> bool:
        """Whether a referral from the discharging to the admitting member explains it."""
        return self.referral_id is not None


def key_of(person_ids: PersonIds, event: Event) -> LocalPatient | None:
    """The local patient an event is about, or None when it says nothing about transfers."""
    claim = person_ids.claim(event)
    if claim is not None:
        return claim.patient
    merge = person_ids.merge(event)
    if merge is not None:
        return (MERGES, merge.retired_id)
    relevant = isinstance(event, PatientAdmitted | PatientDischarged | ReferralEvent)
    local_id = event.envelope.patient_local_id
    return (event.envelope.source, local_id) if relevant and local_id else None


def fact_of(person_ids: PersonIds, event: Event) -> Fact:
    """The fact kept of a relevant event."""
    env = event.envelope
    claim = person_ids.claim(event)
    if claim is not None:
        kind = IDENTIFIED if claim.linked else UNLINKED
        return Fact(kind, env.event_id, env.occurred_at, claim.person_id)
    merge = person_ids.merge(event)
    if merge is not None:
        return Fact(MERGED, env.event_id, env.occurred_at, merge.survivor_id)
    match event:
        case PatientAdmitted():
            source = (("admission_source", event.admission_source.value),)
            return Fact(ADMITTED, env.event_id, env.occurred_at, event.encounter_id, source)
        case PatientDischarged():
            details = [("disposition", event.discharge_disposition.value)]
            if event.transferred_to_institution:
                details.append(("transferred_to", event.transferred_to_institution))
            return Fact(DISCHARGED, env.event_id, env.occurred_at, event.encounter_id, (*details,))
        case ReferralRequested():
            route = (("from", event.from_institution), ("to", event.to_institution))
            return Fact(REFERRAL, env.event_id, env.occurred_at, str(event.referral_id), route)
        case ReferralEvent():
            return Fact(REFERRAL, env.event_id, env.occurred_at, str(event.referral_id))
    raise TypeError(f"{event.event_type} says nothing about transfers")


def evolve(person_ids: PersonIds, patient: Patient | None, event: Event) -> Patient:
    """Add one event's fact to its local patient; a repeated event id changes nothing."""
    key = key_of(person_ids, event)
    if key is None:
        raise TypeError(f"{event.event_type} says nothing about transfers")
    current = patient or Patient(*key)
    if any(f.event_id == event.envelope.event_id for f in current.facts):
        return current
    facts = sorted((*current.facts, fact_of(person_ids, event)), key=lambda f: (f.at, f.event_id))
    return replace(current, facts=tuple(facts))


def routes_of(patient: Patient) -> dict[UUID, Route]:
    """The routes of the referrals this patient's member requested."""
    routes: dict[UUID, Route] = {}
    for f in patient.facts:
        origin, destination = f.detail("from"), f.detail("to")
        if f.kind == REFERRAL and f.subject and origin and destination:
            route = Route(UUID(f.subject), origin, destination, f.at, f.event_id)
            known = routes.get(route.referral_id)
            if known is None or _first(route) < _first(known):  # one rule for a repeated id
                routes[route.referral_id] = route
    return routes


def _first(route: Route) -> tuple[datetime, UUID]:
    """Of two requests of one referral id the earliest (occurred_at, then event id) names the
    route: the request the referrals board applies (projections/referrals/lifecycle.derive)."""
    return (route.requested_at, route.event_id)


@dataclass(frozen=True, slots=True)
class _Stay:
    patient: Patient
    fact: Fact


def _order(stay: _Stay) -> tuple[datetime, UUID, str]:
    return (stay.fact.at, stay.fact.event_id, stay.patient.local_id)


def _first_per_encounter(patients: Iterable[Patient], kind: str) -> list[_Stay]:
    """The earliest fact of a kind per (member, encounter): a re-sent event counts once.

    An encounter id is the member's own stay number (住院流水号), unique at the member, so the
    key has no local id: one stay re-sent under another local id (an HIS merge) is one stay.
    The earliest is chosen by (at, event_id) over all the person's local patients, never by the
    order in which patients (rows) or facts come, so every order gives the same stay.
    """
    first: dict[tuple[str, str | None], _Stay] = {}
    for p in patients:
        for f in p.facts:
            if f.kind != kind:
                continue
            key, stay = (p.institution, f.subject), _Stay(p, f)
            known = first.get(key)
            if known is None or _order(stay) < _order(known):
                first[key] = stay
    return sorted(first.values(), key=_order)


def survivors_of(patients: Iterable[Patient]) -> dict[str, str]:
    """The merges among these rows: retired person id → survivor (one hop; resolve follows)."""
    return {
        p.local_id: survivor
        for p in patients
        if p.is_merge and (survivor := p.survivor_id) is not None
    }


def person_of(patient: Patient, survivors: Mapping[str, str]) -> str | None:
    """The person a local patient belongs to now: its current person, followed through merges."""
    person = patient.person_id
    return None if person is None else resolve(survivors, person)


def derive_transfers(
    person_id: str,
    patients: Iterable[Patient],
    routes: Mapping[UUID, Route],
    survivors: Mapping[str, str] | None = None,
) -> list[Transfer]:
    """The person's transfers: each admission whose latest earlier discharge is at another member
    and was followed by no other stay before this one.

    A function of the person's facts and the known routes, so every arrival order gives the
    same list. Referred when a referral from the discharging to the admitting member, seen by
    either side for this person, was requested in the 30 days before the admission. A patient
    linked to a person merged into `person_id` (`survivors`: retired → survivor) is the
    person's too; a retired person has no patients, hence no transfers.
    """
    merged = survivors or {}
    mine = [p for p in patients if person_of(p, merged) == person_id]
    discharges = [
        s
        for s in _first_per_encounter(mine, DISCHARGED)
        if s.fact.detail("disposition") != DischargeDisposition.DECEASED.value
    ]
    # A referral counts where one of its parties named it for this person (the sender's request,
    # the receiver's answers): another member's event naming it is no party's (NOT_A_PARTY).
    referrals = [
        route
        for p in mine
        for r in p.referral_ids
        if (route := routes.get(r)) is not None
        and p.institution in (route.from_institution, route.to_institution)
    ]
    admissions = _first_per_encounter(mine, ADMITTED)
    transfers: list[Transfer] = []
    for admission in admissions:
        at, stay = admission.fact.at, _stay_of(admission)
        # The stay the patient came from is the latest discharge before the admission at ANY
        # member (the admission's own stay aside); a transfer only when it is at another member.
        earlier = [
            d
            for d in discharges
            if _stay_of(d) != stay and at - TRANSFER_WINDOW <= d.fact.at <= at + CLOCK_TOLERANCE
        ]
        came_from = earlier[-1] if earlier else None
        if came_from is None or came_from.patient.institution == admission.patient.institution:
            continue
        # From a discharge the patient went to the first stay begun after it (the clock
        # tolerance before it included): a stay begun in between, its discharge not (yet) known
        # or after this admission, is where the patient came from. So a discharge is the
        # transfer of one admission at most.
        ends = (_stay_of(came_from), stay)
        if not any(
            _stay_of(a) not in ends
            and came_from.fact.at - CLOCK_TOLERANCE <= a.fact.at
            and _order(a) < _order(admission)
            for a in admissions
        ):
            transfers.append(_transfer(person_id, came_from, admission, referrals))
    return transfers


def _stay_of(s: _Stay) -> tuple[str, str | None]:
    """The stay a fact is about: (member, encounter id)."""
    return (s.patient.institution, s.fact.subject)


def _transfer(person_id: str, discharge: _Stay, admission: _Stay, routes: list[Route]) -> Transfer:
    source, target = discharge.patient.institution, admission.patient.institution
    at = admission.fact.at
    explaining = sorted(
        (r.requested_at, r.referral_id)
        for r in routes
        if r.from_institution == source
        and r.to_institution == target
        and at - REFERRAL_LOOKBACK <= r.requested_at <= at + CLOCK_TOLERANCE
    )
    ids = f"{discharge.fact.event_id}|{admission.fact.event_id}"
    return Transfer(
        transfer_id=uuid.uuid5(_TRANSFER_IDS, ids),
        person_id=person_id,
        from_institution=source,
        from_patient_local_id=discharge.patient.local_id,
        from_encounter_id=discharge.fact.subject or "",
        discharged_at=discharge.fact.at,
        discharge_disposition=discharge.fact.detail("disposition") or "UNKNOWN",
        to_institution=target,
        to_patient_local_id=admission.patient.local_id,
        to_encounter_id=admission.fact.subject or "",
        admitted_at=at,
        admission_source=admission.fact.detail("admission_source") or "UNKNOWN",
        referral_id=explaining[-1][1] if explaining else None,
    )


def merge_routes(patients: Iterable[Patient]) -> dict[UUID, Route]:
    """Every known route; a referral id requested twice keeps the earliest request's route."""
    merged: dict[UUID, Route] = {}
    for p in patients:
        for rid, route in routes_of(p).items():
            known = merged.get(rid)
            if known is None or _first(route) < _first(known):
                merged[rid] = route
    return merged


def transfers_of(person_ids: PersonIds, events: Iterable[Event]) -> list[Transfer]:
    """The whole projection in memory: every transfer the events imply, by transfer id."""
    patients: dict[LocalPatient, Patient] = {}
    for event in events:
        key = key_of(person_ids, event)
        if key is not None:
            patients[key] = evolve(person_ids, patients.get(key), event)
    routes = merge_routes(patients.values())
    found = transfers_of_persons(patients.values(), routes, survivors_of(patients.values()))
    return sorted(found, key=lambda t: t.transfer_id)


def transfers_of_persons(
    patients: Iterable[Patient], routes: Mapping[UUID, Route], survivors: Mapping[str, str]
) -> list[Transfer]:
    """The transfers of every person these patients belong to now (through merges), the
    patients grouped by that person: what the store re-derives and the pure projection is."""
    by_person: dict[str, list[Patient]] = {}
    for p in patients:
        if (person := person_of(p, survivors)) is not None:
            by_person.setdefault(person, []).append(p)
    return [
        t
        for person, ps in by_person.items()
        for t in derive_transfers(person, ps, routes, survivors)
    ]
