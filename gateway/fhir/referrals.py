"""Referrals (双向转诊) as a FHIR ServiceRequest (the request) and a Task (its fulfilment)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from gateway.fhir.mapped import Mapped, blank, drop_empty, instant, recorded_by
from gateway.fhir.orders import PRIORITIES
from gateway.fhir.systems import (
    REFERRAL_ID,
    SNOMED,
    Json,
    concept,
    organization,
    patient,
    ref,
    resource_id,
)
from projections.record.entries import EntryKind
from projections.record.queries import TimelineEntry
from projections.record.referrals import board_fact
from projections.referrals.lifecycle import (
    TRANSITIONS,
    Board,
    EntryStatus,
    Fact,
    ReferralState,
    derive,
    may_send,
    referral_of,
)

TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
# The board's state (projections/referrals/lifecycle.derive) as a Task's status. An unanswered
# request past its expiry `failed` (no answer came); businessStatus keeps the state's own name.
_STATUS = {
    ReferralState.AWAITING_REQUEST: "requested",
    ReferralState.REQUESTED: "requested",
    ReferralState.ACCEPTED: "accepted",
    ReferralState.REJECTED: "rejected",
    ReferralState.CANCELLED: "cancelled",
    ReferralState.EXPIRED: "failed",
    ReferralState.ARRIVED: "in-progress",
    ReferralState.COMPLETED: "completed",
}
_REQUEST_STATUS = {
    ReferralState.REJECTED: "revoked",
    ReferralState.CANCELLED: "revoked",
    ReferralState.EXPIRED: "revoked",
    ReferralState.COMPLETED: "completed",
}


@dataclass(frozen=True, slots=True)
class Referral:
    """One referral's entries in the record, oldest first, and its two members when known."""

    referral_id: str
    lines: tuple[TimelineEntry, ...]

    @property
    def request(self) -> TimelineEntry | None:
        """The ReferralRequested entry, if the sender's record is visible and linked."""
        return next((e for e in self.lines if e.status == "REQUESTED"), None)

    @property
    def parties(self) -> frozenset[str]:
        """The sending and receiving members the request names; none while it is not visible.

        Only the request says who the parties are (as on the referral board): a member that
        recorded an event of the referral is not a party for that."""
        if (r := self.request) is None:
            return frozenset()
        return frozenset(
            {str(r.detail.get("from_institution")), str(r.detail.get("to_institution"))}
        )


def referrals_of(entries: Iterable[TimelineEntry]) -> list[Referral]:
    """The referrals among these entries, by id; once the request is visible, only its lines
    and those its parties may send (lifecycle.SENDERS), so an outsider's line is not served."""
    by_id: dict[str, list[TimelineEntry]] = defaultdict(list)
    for e in entries:
        if e.kind is EntryKind.REFERRAL and e.subject_id:
            by_id[e.subject_id].append(e)
    found = []
    for rid, lines in sorted(by_id.items()):
        referral = Referral(rid, tuple(sorted(lines, key=lambda e: (e.at, e.entry_id))))
        if (request := referral.request) is not None:
            kept = tuple(e for e in referral.lines if _by_a_party(e, request))
            referral = Referral(rid, kept)
        found.append(referral)
    return found


def _by_a_party(line: TimelineEntry, request: TimelineEntry) -> bool:
    """Whether the line is the request, or an event that one of its parties may send."""
    if line.status == "REQUESTED":
        return line is request
    return may_send(line.event_type, line.institution, request.detail)


def referral_request_id(referral_id: str) -> str:
    """The ServiceRequest id of a referral (referral ids are consortium-wide)."""
    return resource_id("ServiceRequest", "referral", referral_id)


def board_of(referral: Referral, now: datetime | None) -> Board:
    """The referral as the desks' board derives it from these lines, at `now` (the read's
    time: an unanswered request past its expiry has expired), so the Task says what the board
    says — not the state of the latest line (a late acceptance after a rejection is ignored)."""
    facts = [_fact(line) for line in referral.lines if line.event_type in TRANSITIONS]
    return derive(referral_of(_uuid(referral.referral_id), facts), now)


def _fact(line: TimelineEntry) -> Fact:
    code = line.code if line.status == "REQUESTED" else None
    return board_fact(
        line.event_type,
        event_id_of(line),
        line.at,
        line.institution,
        line.local_id,
        code,
        line.detail,
    )


def event_id_of(line: TimelineEntry) -> UUID:
    """The event a line comes from (the record's entry ids are "<event id>:<seq>"; another
    form names itself)."""
    return _uuid(line.entry_id.split(":", 1)[0])


def _uuid(text: str) -> UUID:
    """The UUID a text is, or one derived from it (ids the record did not write as UUIDs)."""
    try:
        return UUID(text)
    except ValueError:
        return uuid5(NAMESPACE_URL, text)


def referrals(
    person_id: str, entries: Iterable[TimelineEntry], now: datetime | None = None
) -> list[Mapped]:
    """A Task per referral, and a ServiceRequest for each referral whose request is visible;
    their status is the board's at `now`."""
    found = []
    for referral in referrals_of(entries):
        board = board_of(referral, now)
        found.append(task(person_id, referral, board))
        if referral.request is not None:
            found.append(_request(person_id, referral, referral.request, board))
    return found


def _identifier(referral_id: str) -> Json:
    return {"system": REFERRAL_ID, "value": f"urn:uuid:{referral_id}"}


def task(person_id: str, referral: Referral, board: Board) -> Mapped:
    """The Task that tracks a referral from request to completion (or its end)."""
    lines, request = referral.lines, referral.request
    last = lines[-1]
    # Only what the board applied: a late acceptance after a rejection, a second completion or
    # an outsider's line is on the timeline but does not make the Task.
    done = {e.event_id for e in board.timeline if e.status is EntryStatus.APPLIED}
    kept = [e for e in lines if event_id_of(e) in done]
    ended = next((e for e in reversed(kept) if e.status in ("REJECTED", "CANCELLED")), None)
    arrived = next((e for e in kept if e.status == "ARRIVED"), None)
    completed = next((e for e in kept if e.status == "COMPLETED"), None)
    summary = completed.detail.get("discharge_summary") if completed else None
    resource = {
        "resourceType": "Task",
        "id": resource_id("Task", "referral", referral.referral_id),
        "identifier": [_identifier(referral.referral_id)],
        "basedOn": [ref("ServiceRequest", referral_request_id(referral.referral_id))]
        if request
        else [],
        "status": _STATUS[board.state],
        "statusReason": _status_reason(board, ended),
        "businessStatus": {"text": board.state.value},
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": "fulfill"}], "text": "转诊 referral"},
        "focus": ref("ServiceRequest", referral_request_id(referral.referral_id))
        if request
        else None,
        "for": patient(person_id),
        "executionPeriod": {
            "start": instant(arrived.at) if arrived else None,
            "end": instant(completed.at) if completed else None,
        },
        "authoredOn": instant(request.at) if request else None,
        "lastModified": instant(last.at),
        "requester": organization(str(request.detail["from_institution"])) if request else None,
        "owner": organization(str(request.detail["to_institution"])) if request else None,
        "output": [{"type": {"text": "discharge summary"}, "valueString": summary}]
        if not blank(summary)
        else [],
    }
    return Mapped((request or lines[0]).at, drop_empty(resource))


def _status_reason(board: Board, ended: TimelineEntry | None) -> Json | None:
    if board.state is ReferralState.EXPIRED:
        return {"text": "no answer before the request lapsed"}
    closing = board.state in (ReferralState.REJECTED, ReferralState.CANCELLED)
    if closing and ended is not None and ended.detail.get("reason"):
        return {"text": ended.detail["reason"]}
    return None


def _request(person_id: str, referral: Referral, request: TimelineEntry, board: Board) -> Mapped:
    status = _REQUEST_STATUS.get(board.state, "active")
    detail = request.detail
    resource = {
        "resourceType": "ServiceRequest",
        "id": referral_request_id(referral.referral_id),
        "meta": recorded_by(request.institution),
        "identifier": [_identifier(referral.referral_id)],
        "status": status,
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Referral"}]}],
        "priority": PRIORITIES.get(str(detail.get("urgency"))),
        "code": {"text": detail.get("requested_service") or "referral"},
        "subject": patient(person_id),
        "authoredOn": instant(request.at),
        "requester": organization(str(detail.get("from_institution"))),
        "performer": [organization(str(detail.get("to_institution")))],
        "reasonCode": [concept(request.code_system, request.code, request.display)]
        if request.code
        else [],
        "note": [{"text": detail["clinical_summary"]}] if detail.get("clinical_summary") else [],
    }
    return Mapped(request.at, drop_empty(resource))
