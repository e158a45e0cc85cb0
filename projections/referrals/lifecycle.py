"""The referral state machine as pure functions: facts in, the board's row out (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from events.envelope import Event
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralEvent,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)


class ReferralState(StrEnum):
    """Where a referral stands; AWAITING_REQUEST holds events that came before their request."""

    AWAITING_REQUEST = "AWAITING_REQUEST"
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    ARRIVED = "ARRIVED"
    COMPLETED = "COMPLETED"


# Acceptance deadlines on the event clock, from the request's occurred_at (documented in
# docs/referrals.md): an emergency must be answered within 2 h, urgent within a day.
ACCEPTANCE_WINDOWS: dict[str, timedelta] = {
    "EMERGENCY": timedelta(hours=2),
    "URGENT": timedelta(hours=24),
    "ROUTINE": timedelta(hours=72),
    "UNKNOWN": timedelta(hours=72),
}
# An unanswered request lapses a week after it was made; answers after that are ignored.
EXPIRY = timedelta(days=7)

# Which states each event moves from, and to.
TRANSITIONS: dict[str, tuple[frozenset[ReferralState], ReferralState]] = {
    "ReferralRequested": (frozenset({ReferralState.AWAITING_REQUEST}), ReferralState.REQUESTED),
    "ReferralAccepted": (frozenset({ReferralState.REQUESTED}), ReferralState.ACCEPTED),
    "ReferralRejected": (frozenset({ReferralState.REQUESTED}), ReferralState.REJECTED),
    "ReferralCancelled": (
        frozenset({ReferralState.REQUESTED, ReferralState.ACCEPTED}),
        ReferralState.CANCELLED,
    ),
    "ReferralPatientArrived": (frozenset({ReferralState.ACCEPTED}), ReferralState.ARRIVED),
    "ReferralCompleted": (frozenset({ReferralState.ARRIVED}), ReferralState.COMPLETED),
}
# The event whose absence parks another one (it may still be on its way).
PREDECESSOR: dict[str, str] = {
    "ReferralAccepted": "ReferralRequested",
    "ReferralRejected": "ReferralRequested",
    "ReferralCancelled": "ReferralRequested",
    "ReferralPatientArrived": "ReferralAccepted",
    "ReferralCompleted": "ReferralPatientArrived",
}
# States no event leaves: once there, nothing pending can ever apply, so nothing waits.
TERMINAL = frozenset(
    {
        ReferralState.REJECTED,
        ReferralState.CANCELLED,
        ReferralState.EXPIRED,
        ReferralState.COMPLETED,
    }
)
assert all(not (TERMINAL & moves_from) for moves_from, _ in TRANSITIONS.values())

# Which parties of a referral may publish each event (the schemas' docs): the receiver answers,
# receives the patient and closes the loop (its summary goes back to the sender); either party
# may cancel (ReferralCancelled.cancelled_by names the referring or receiving institution or the
# patient). A request is its sender's own (the model checks from_institution = source).
SENDERS: dict[str, tuple[str, ...]] = {
    "ReferralAccepted": ("to_institution",),
    "ReferralRejected": ("to_institution",),
    "ReferralPatientArrived": ("to_institution",),
    "ReferralCompleted": ("to_institution",),
    "ReferralCancelled": ("from_institution", "to_institution"),
}


# Timeline entries at the same instant are listed in lifecycle order.
_RANK = {kind: rank for rank, kind in enumerate(TRANSITIONS)}


class EntryStatus(StrEnum):
    """What became of one event in a referral's timeline."""

    APPLIED = "APPLIED"
    PARKED = "PARKED"  # its predecessor has not arrived yet
    IGNORED = "IGNORED"  # the referral took another path (e.g. accepted after a rejection)
    DERIVED = "DERIVED"  # no event: the referral expired on the event clock
    NOT_A_PARTY = "NOT_A_PARTY"  # sent by an institution that may not send it (SENDERS)


@dataclass(frozen=True, slots=True)
class Fact:
    """What the board keeps of one referral event."""

    kind: str
    event_id: UUID
    occurred_at: datetime
    source: str
    patient_local_id: str | None
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, name: str) -> str | None:
        """One detail field, or None."""
        return dict(self.details).get(name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the fact."""
        return {
            "kind": self.kind,
            "event_id": str(self.event_id),
            "occurred_at": self.occurred_at.isoformat(),
            "source": self.source,
            "patient_local_id": self.patient_local_id,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fact:
        """The fact back from to_json's dict."""
        return cls(
            kind=data["kind"],
            event_id=UUID(data["event_id"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            source=data["source"],
            patient_local_id=data["patient_local_id"],
            details=tuple(sorted(data["details"].items())),
        )


def _details(event: ReferralEvent) -> dict[str, str | None]:  # noqa: PLR0911 - one per type
    match event:
        case ReferralRequested():
            return {
                "direction": event.direction.value,
                "from_institution": event.from_institution,
                "to_institution": event.to_institution,
                "urgency": event.urgency.value,
                "reason_code": event.reason.code,
                "requested_service": event.requested_service,
            }
        case ReferralAccepted():
            arrival = event.scheduled_arrival
            return {"scheduled_arrival": arrival.isoformat() if arrival else None}
        case ReferralRejected():
            return {"reason": event.reason, "suggested_institution": event.suggested_institution}
        case ReferralCancelled():
            return {"reason": event.reason, "cancelled_by": event.cancelled_by.value}
        case ReferralPatientArrived():
            return {"arrival_encounter_id": event.arrival_encounter_id}
        case ReferralCompleted():
            return {"final_diagnoses": ",".join(d.code.code for d in event.final_diagnoses)}
    return {}


def fact_of(event: ReferralEvent) -> Fact:
    """The fact the board keeps of a referral event."""
    env = event.envelope
    details = tuple(sorted((k, v) for k, v in _details(event).items() if v is not None))
    return Fact(
        event.event_type, env.event_id, env.occurred_at, env.source, env.patient_local_id, details
    )


@dataclass(frozen=True, slots=True)
class Referral:
    """A referral's aggregate: every distinct event seen for it, in canonical order."""

    referral_id: UUID
    facts: tuple[Fact, ...] = ()


def key_of(event: Event) -> UUID | None:
    """The referral an event belongs to, or None for events of other families."""
    return event.referral_id if isinstance(event, ReferralEvent) else None


def evolve(referral: Referral | None, event: Event) -> Referral:
    """Add one event to its referral; a repeated event id changes nothing."""
    if not isinstance(event, ReferralEvent):
        raise TypeError(f"{event.event_type} is not a referral event")
    current = referral or Referral(event.referral_id)
    event_id = event.envelope.event_id
    for f in current.facts:
        if f.event_id == event_id:
            return current
    facts = sorted((*current.facts, fact_of(event)), key=_canonical)
    return Referral(current.referral_id, tuple(facts))  # not replace(): a fifth of evolve


def _canonical(fact: Fact) -> tuple[datetime, UUID]:
    return fact.occurred_at, fact.event_id


def referral_of(referral_id: UUID, facts: Iterable[Fact]) -> Referral:
    """The aggregate of a set of facts (another projection's copy of the events, e.g. the
    record's entries): one fact per event id, in canonical order, as evolve keeps them. Of two
    facts with one event id the least is kept, so the set decides, not the order it came in."""
    distinct: dict[UUID, Fact] = {}
    for f in sorted(facts, key=lambda f: (*_canonical(f), f.source, f.kind, repr(f))):
        distinct.setdefault(f.event_id, f)
    return Referral(referral_id, tuple(sorted(distinct.values(), key=_canonical)))


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a referral's timeline."""

    at: datetime
    kind: str
    status: EntryStatus
    event_id: UUID | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Board:
    """A referral as the referral desks see it: the row of the referrals table and its timeline."""

    referral_id: UUID
    state: ReferralState
    direction: str | None = None
    from_institution: str | None = None
    to_institution: str | None = None
    urgency: str | None = None
    reason_code: str | None = None
    requested_service: str | None = None
    from_patient_local_id: str | None = None
    to_patient_local_id: str | None = None
    requested_at: datetime | None = None
    accept_deadline: datetime | None = None
    expires_at: datetime | None = None
    answered_at: datetime | None = None
    scheduled_arrival: datetime | None = None
    arrived_at: datetime | None = None
    closed_at: datetime | None = None
    overdue: bool = False
    timeline: tuple[TimelineEntry, ...] = field(default=())


def may_send(kind: str, source: str, request: Mapping[str, Any]) -> bool:
    """Whether `source` may send an event of `kind`, by the parties the request named
    (`request` maps from_institution and to_institution to them; a request is always its own)."""
    parties = SENDERS.get(kind)
    return parties is None or any(source == request.get(p) for p in parties)


def _by_a_party(fact: Fact, row: dict[str, Any]) -> bool:
    """Whether the fact's source may send it, by the parties the request named (row's)."""
    return may_send(fact.kind, fact.source, row)


def _next_applicable(pending: list[Fact], state: ReferralState, row: dict[str, Any]) -> Fact | None:
    """The earliest pending fact from a party that can move the referral from its state."""
    for fact in pending:  # pending is in (occurred_at, event_id) order
        if state in TRANSITIONS[fact.kind][0] and _by_a_party(fact, row):
            return fact
    return None


def derive(referral: Referral, clock: datetime | None) -> Board:
    """The referral's board row at an event clock; a function of the set of its events.

    Events are replayed in causal order (the earliest event that the current state accepts,
    again and again), so any arrival order gives the same row. Only a party's events apply
    (SENDERS); the parties are the request's, and nothing else applies before the request.
    The row's columns collect in a dict and the frozen Board is built once at the end (a
    replace per fact cost a fifth of a worker's time).
    """
    state = ReferralState.AWAITING_REQUEST
    row: dict[str, Any] = {}
    timeline: list[TimelineEntry] = []
    pending = list(referral.facts)
    while (fact := _next_applicable(pending, state, row)) is not None:
        pending.remove(fact)
        expires_at = row.get("expires_at")
        if state is ReferralState.REQUESTED and expires_at and fact.occurred_at > expires_at:
            state = ReferralState.EXPIRED
            timeline.append(TimelineEntry(expires_at, "ReferralExpired", EntryStatus.DERIVED))
            pending.append(fact)
            break
        _apply(row, fact)
        state = TRANSITIONS[fact.kind][1]
        timeline.append(_entry(fact, EntryStatus.APPLIED))
    expires_at = row.get("expires_at")
    if state is ReferralState.REQUESTED and clock and expires_at and clock > expires_at:
        state = ReferralState.EXPIRED
        timeline.append(TimelineEntry(expires_at, "ReferralExpired", EntryStatus.DERIVED))
    # Once the request named the parties, an outsider's event never applies and counts for no
    # predecessor; before it, every event waits (its sender cannot be judged yet).
    requested = "requested_at" in row
    waiting = set() if state in TERMINAL else _waiting(referral.facts, pending, requested, row)
    for fact in pending:
        if requested and not _by_a_party(fact, row):
            timeline.append(_entry(fact, EntryStatus.NOT_A_PARTY))
            continue
        parked = fact.kind in waiting
        timeline.append(_entry(fact, EntryStatus.PARKED if parked else EntryStatus.IGNORED))
    timeline.sort(key=lambda e: (e.at, _RANK.get(e.kind, len(_RANK)), str(e.event_id)))
    return Board(
        referral.referral_id,
        state,
        overdue=_overdue(row, state, clock),
        timeline=tuple(timeline),
        **row,
    )


def _waiting(
    facts: Iterable[Fact], pending: list[Fact], requested: bool, row: dict[str, Any]
) -> set[str]:
    """The kinds of pending facts that still wait for a predecessor (PARKED, not IGNORED).

    A fact waits when its predecessor never applied and either has not arrived or waits itself
    (an arrival read with an acceptance that waits for its request waits too); a predecessor
    that arrived and did not apply took another path, and so does what follows it."""
    pending_ids = {id(f) for f in pending}
    kinds = {f.kind for f in facts if not requested or _by_a_party(f, row)}
    applied = {f.kind for f in facts if id(f) not in pending_ids}
    waiting: set[str] = set()
    # Predecessors come first in TRANSITIONS' order: each kind's predecessor is decided first.
    for kind in TRANSITIONS:
        predecessor = PREDECESSOR.get(kind)
        if predecessor is None or predecessor in applied:
            continue
        if predecessor not in kinds or predecessor in waiting:
            waiting.add(kind)
    return waiting


def _entry(fact: Fact, status: EntryStatus) -> TimelineEntry:
    return TimelineEntry(fact.occurred_at, fact.kind, status, fact.event_id, fact.source)


def _apply(row: dict[str, Any], fact: Fact) -> None:
    """Set the board columns one applicable fact decides (row is derive's own, never shared)."""
    at = fact.occurred_at
    match fact.kind:
        case "ReferralRequested":
            details = dict(fact.details)
            urgency = details.get("urgency") or "UNKNOWN"
            row.update(
                direction=details.get("direction"),
                from_institution=details.get("from_institution"),
                to_institution=details.get("to_institution"),
                urgency=urgency,
                reason_code=details.get("reason_code"),
                requested_service=details.get("requested_service"),
                from_patient_local_id=fact.patient_local_id,
                requested_at=at,
                accept_deadline=at + ACCEPTANCE_WINDOWS.get(urgency, ACCEPTANCE_WINDOWS["UNKNOWN"]),
                expires_at=at + EXPIRY,
            )
        case "ReferralAccepted":
            arrival = fact.detail("scheduled_arrival")
            row.update(
                answered_at=at,
                to_patient_local_id=fact.patient_local_id,
                scheduled_arrival=datetime.fromisoformat(arrival) if arrival else None,
            )
        case "ReferralRejected":
            row.update(answered_at=at, to_patient_local_id=fact.patient_local_id, closed_at=at)
        case "ReferralCancelled":
            row.update(answered_at=row.get("answered_at") or at, closed_at=at)
        case "ReferralPatientArrived":
            row.update(arrived_at=at, to_patient_local_id=fact.patient_local_id)
        case "ReferralCompleted":
            row.update(closed_at=at)
        case _:
            raise ValueError(f"not a referral event: {fact.kind}")


def _overdue(row: dict[str, Any], state: ReferralState, clock: datetime | None) -> bool:
    """Whether the referral waited for an answer past its acceptance deadline."""
    deadline = row.get("accept_deadline")
    if deadline is None:
        return False
    waited_until = row.get("answered_at")
    if waited_until is None:
        waited_until = row.get("expires_at") if state is ReferralState.EXPIRED else clock
    return waited_until is not None and waited_until > deadline


def needs_sweep(board: Board, clock: datetime) -> bool:
    """Whether a later clock alone changes this row (an unanswered request passing a limit)."""
    if board.state is not ReferralState.REQUESTED:
        return False
    deadline_passed = board.accept_deadline is not None and clock > board.accept_deadline
    expired = board.expires_at is not None and clock > board.expires_at
    return (deadline_passed and not board.overdue) or expired
