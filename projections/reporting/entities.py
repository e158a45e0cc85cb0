"""Entities as sets of facts, and what each contributes to the report cells (pure, no I/O).

An entity is whatever one figure needs the events of together: an inpatient stay (admission
and discharge), an outpatient visit, a ward's census of one day, a referral. Its contributions
are a function of its set of facts and the event clock, so any arrival order, and any number of
repeated deliveries, give the same contributions; a late event changes them, and the store
moves the difference between the old and the new contributions into the cells.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from events.derived import RepeatCheckDerived, TransferDerived
from events.encounter import (
    BedCensusReported,
    DischargeDisposition,
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
)
from events.envelope import Event
from events.membership import Membership, load_membership
from events.referral import ReferralEvent, ReferralRequested
from projections.referrals.lifecycle import (
    Board,
    EntryStatus,
    Fact,
    Referral,
    ReferralState,
    derive,
)
from projections.reporting.windows import local_date


class Kind(StrEnum):
    """The kinds of entity; a new fact to report is a new kind (docs/reporting.md)."""

    STAY = "stay"
    VISIT = "visit"
    WARD_DAY = "ward_day"
    REFERRAL = "referral"
    # A transfer between members as the transfers projection derived it (its latest revision).
    TRANSFER = "transfer"
    # An order of a recognised test as the shared record checked it (its latest revision).
    ORDER_CHECK = "order_check"


# Kinds made of derived revisions: only the latest revision of each counts.
REVISED: frozenset[Kind] = frozenset({Kind.TRANSFER, Kind.ORDER_CHECK})


@dataclass(frozen=True, slots=True, order=True)
class Contribution:
    """What one entity adds to one institution's count (or sum) of one measure at an instant."""

    institution: str
    measure: str
    at: datetime
    value: int = 1
    sample: int | None = None  # a value kept for exact medians (minutes to acceptance)

    def to_json(self) -> list[Any]:
        """A compact JSON form."""
        return [self.institution, self.measure, self.at.isoformat(), self.value, self.sample]

    @classmethod
    def from_json(cls, data: list[Any]) -> Contribution:
        """Back from to_json."""
        institution, measure, at, value, sample = data
        return cls(institution, measure, datetime.fromisoformat(at), int(value), sample)


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity's facts (no person identifier, no free text) and what the cells hold of it."""

    key: str
    kind: Kind
    facts: tuple[Fact, ...] = ()
    # The contributions the stored cells hold of this entity (written by the store).
    applied: tuple[Contribution, ...] = ()
    # When a later event clock alone would change what is applied (the sweep's work list).
    due_at: datetime | None = None


def key_of(event: Event) -> str | None:
    """The entity an event belongs to, or None when reporting does not count it."""
    env = event.envelope
    match event:
        case PatientAdmitted() | PatientDischarged():
            key = f"{Kind.STAY}|{env.source}|{event.encounter_id}"
        case OutpatientVisitStarted() | OutpatientVisitCompleted():
            key = f"{Kind.VISIT}|{env.source}|{event.encounter_id}"
        case BedCensusReported():
            key = f"{Kind.WARD_DAY}|{env.source}|{event.ward_code}|{local_date(env.occurred_at)}"
        case ReferralEvent():
            key = f"{Kind.REFERRAL}|{event.referral_id}"
        case TransferDerived():
            key = f"{Kind.TRANSFER}|{event.transfer_id}"
        case RepeatCheckDerived():
            key = f"{Kind.ORDER_CHECK}|{event.check_id}"
        case _:
            return None
    return key


def _details(event: Event) -> dict[str, str]:
    """The few fields a figure needs; identifiers and free text are never kept."""
    match event:
        case PatientDischarged():
            return {"disposition": event.discharge_disposition.value}
        case BedCensusReported():
            return {"staffed": str(event.beds_staffed), "occupied": str(event.beds_occupied)}
        case ReferralRequested():
            return {
                "direction": event.direction.value,
                "from_institution": event.from_institution,
                "to_institution": event.to_institution,
                "urgency": event.urgency.value,
            }
        case TransferDerived():
            return {
                "from_institution": event.from_institution,
                "to_institution": event.to_institution,
                "admitted_at": event.admitted_at.isoformat(),
                "referred": str(event.referred).lower(),
                "present": str(event.present).lower(),
                "revision": f"{event.generation:010d}.{event.sequence:019d}",
            }
        case RepeatCheckDerived():
            return {
                "institution": event.institution,
                "ordered_at": event.ordered_at.isoformat(),
                "flagged": str(event.flagged).lower(),
                "reused": str(event.reused).lower(),
                "present": str(event.present).lower(),
                "revision": f"{event.generation:010d}.{event.sequence:019d}",
            }
    return {}


def fact_of(event: Event) -> Fact:
    """The fact an entity keeps of an event (the patient's local id is dropped)."""
    env = event.envelope
    details = tuple(sorted(_details(event).items()))
    return Fact(event.event_type, env.event_id, env.occurred_at, env.source, None, details)


def evolve(entity: Entity | None, event: Event) -> Entity:
    """The entity with one more fact; a repeated event id changes nothing."""
    key = key_of(event)
    if key is None:
        raise TypeError(f"{event.event_type} is not counted by reporting")
    current = entity or Entity(key, Kind(key.split("|", 1)[0]))
    if any(f.event_id == event.envelope.event_id for f in current.facts):
        return current
    if current.kind in REVISED:
        # Only the latest revision counts: keep it alone, whatever order revisions arrive in.
        latest = max((*current.facts, fact_of(event)), key=_revision)
        return replace(current, facts=(latest,))
    facts = sorted((*current.facts, fact_of(event)), key=lambda f: (f.occurred_at, f.event_id))
    return replace(current, facts=tuple(facts))


def _revision(fact: Fact) -> tuple[str, UUID]:
    """A derived revision's order: (generation, sequence), then its event id."""
    return (fact.detail("revision") or "", fact.event_id)


def _first(facts: tuple[Fact, ...], *kinds: str) -> Fact | None:
    """The earliest fact of these kinds (facts are in (occurred_at, event_id) order)."""
    return next((f for f in facts if f.kind in kinds), None)


def _last(facts: tuple[Fact, ...], kind: str) -> Fact | None:
    return next((f for f in reversed(facts) if f.kind == kind), None)


def _stay(facts: tuple[Fact, ...]) -> list[Contribution]:
    admitted = _first(facts, "PatientAdmitted")
    discharged = _first(facts, "PatientDischarged")
    found: list[Contribution] = []
    if admitted is not None:
        found.append(Contribution(admitted.source, "admissions", admitted.occurred_at))
    if discharged is not None:
        at, source = discharged.occurred_at, discharged.source
        found.append(Contribution(source, "discharges", at))
        if discharged.detail("disposition") == DischargeDisposition.TRANSFERRED_OUTSIDE:
            found.append(Contribution(source, "transfers_outside", at))
        if admitted is not None and at >= admitted.occurred_at:
            minutes = int((at - admitted.occurred_at).total_seconds() // 60)
            found.append(Contribution(source, "stays_measured", at))
            found.append(Contribution(source, "stay_minutes", at, minutes))
    return found


def _visit(facts: tuple[Fact, ...]) -> list[Contribution]:
    # Counted when it started; a completion read first stands in until the start arrives.
    first = _first(facts, "OutpatientVisitStarted") or _first(facts, "OutpatientVisitCompleted")
    return (
        []
        if first is None
        else [Contribution(first.source, "outpatient_visits", first.occurred_at)]
    )


def _ward_day(facts: tuple[Fact, ...]) -> list[Contribution]:
    last = _last(facts, "BedCensusReported")
    if last is None:
        return []
    staffed, occupied = int(last.detail("staffed") or 0), int(last.detail("occupied") or 0)
    return [
        Contribution(last.source, "beds_staffed", last.occurred_at, staffed),
        Contribution(last.source, "inpatients", last.occurred_at, occupied),
    ]


def _transfer(facts: tuple[Fact, ...]) -> list[Contribution]:
    latest = max(facts, key=_revision, default=None)
    if latest is None or latest.detail("present") != "true":
        return []  # retracted: it counts nowhere
    at = datetime.fromisoformat(latest.detail("admitted_at") or latest.occurred_at.isoformat())
    how = "referred" if latest.detail("referred") == "true" else "unreferred"
    return [
        Contribution(latest.detail("to_institution") or "", f"transfers_received_{how}", at),
        Contribution(latest.detail("from_institution") or "", f"transfers_sent_{how}", at),
    ]


def _order_check(facts: tuple[Fact, ...]) -> list[Contribution]:
    latest = max(facts, key=_revision, default=None)
    if latest is None or latest.detail("present") != "true":
        return []  # no longer checked: it counts nowhere
    at = datetime.fromisoformat(latest.detail("ordered_at") or latest.occurred_at.isoformat())
    if latest.detail("flagged") != "true":
        part = "not_flagged"
    else:
        part = "flagged_reused" if latest.detail("reused") == "true" else "flagged_not_reused"
    return [Contribution(latest.detail("institution") or "", f"repeat_checks_{part}", at)]


def _direction(declared: str | None, sender: str, receiver: str, members: Membership) -> str:
    """The direction by the members' levels (what the bureau judges), else as declared."""
    if sender in members and receiver in members:
        source, target = members.level(sender).tier, members.level(receiver).tier
        return "UP" if target > source else "DOWN" if target < source else "LATERAL"
    return declared or "UNKNOWN"


def _referral(entity: Entity, clock: datetime | None, members: Membership) -> list[Contribution]:
    board = derive(Referral(_referral_id(entity.key), entity.facts), clock)
    if board.requested_at is None or board.from_institution is None:
        return []  # its request has not arrived yet
    sender, receiver, at = board.from_institution, board.to_institution or "", board.requested_at
    found: list[Contribution] = []
    direction = _direction(board.direction, sender, receiver, members)
    if direction != "UNKNOWN":
        found.append(Contribution(sender, f"referrals_{direction.lower()}", at))
        found += _received(board, receiver, at)
    if sender in members and receiver in members:  # the flow matrix: sender x destination level
        found.append(Contribution(sender, f"referrals_to_{members.level(receiver).value}", at))
    if board.state is ReferralState.COMPLETED and board.closed_at is not None:
        # The loop closes at the sender: the summary came back (回转).
        found.append(Contribution(sender, "referrals_completed", board.closed_at))
    return found


def _received(board: Board, receiver: str, at: datetime) -> list[Contribution]:
    """A received referral in its request window: received, in exactly one of the disjoint
    fates (accepted, not accepted, undecided), decided when it is one of the first two, and
    overdue or not; so the cohort's lines (measures.REFERRAL_COHORT_LINES) are identities."""
    found = [Contribution(receiver, "referrals_received", at)]
    applied = {e.kind: e.at for e in board.timeline if e.status is EntryStatus.APPLIED}
    accepted = applied.get("ReferralAccepted")
    decided = bool(
        accepted or "ReferralRejected" in applied or board.state is ReferralState.EXPIRED
    )
    if accepted is not None:
        minutes = int((accepted - at).total_seconds() // 60)
        found.append(Contribution(receiver, "referrals_accepted", at, 1, minutes))
    else:
        fate = "referrals_not_accepted" if decided else "referrals_undecided"
        found.append(Contribution(receiver, fate, at))
    if decided:
        found.append(Contribution(receiver, "referrals_decided", at))
    overdue = "referrals_overdue" if board.overdue else "referrals_not_overdue"
    found.append(Contribution(receiver, overdue, at))
    return found


def _referral_id(key: str) -> UUID:
    return UUID(key.split("|", 1)[1])


def contributions(
    entity: Entity, clock: datetime | None, members: Membership | None = None
) -> tuple[Contribution, ...]:
    """What the entity adds to the cells at this event clock, in a canonical order."""
    match entity.kind:
        case Kind.STAY:
            found = _stay(entity.facts)
        case Kind.VISIT:
            found = _visit(entity.facts)
        case Kind.WARD_DAY:
            found = _ward_day(entity.facts)
        case Kind.REFERRAL:
            found = _referral(entity, clock, members or load_membership())
        case Kind.TRANSFER:
            found = _transfer(entity.facts)
        case Kind.ORDER_CHECK:
            found = _order_check(entity.facts)
    return tuple(sorted(found))


def next_change(entity: Entity, clock: datetime | None) -> datetime | None:
    """When a later event clock alone would change the contributions (for the sweep)."""
    if entity.kind is not Kind.REFERRAL:
        return None
    board = derive(Referral(_referral_id(entity.key), entity.facts), clock)
    if board.state is not ReferralState.REQUESTED:
        return None
    return board.expires_at if board.overdue else board.accept_deadline
