"""Referrals (双向转诊) as a FHIR ServiceRequest (the request) and a Task (its fulfilment)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

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
from projections.referrals.lifecycle import may_send

TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
_STATUS = {
    "REQUESTED": "requested",
    "ACCEPTED": "accepted",
    "REJECTED": "rejected",
    "CANCELLED": "cancelled",
    "ARRIVED": "in-progress",
    "COMPLETED": "completed",
}
_REQUEST_STATUS = {"REJECTED": "revoked", "CANCELLED": "revoked", "COMPLETED": "completed"}


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


def referrals(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """A Task per referral, and a ServiceRequest for each referral whose request is visible."""
    found = []
    for referral in referrals_of(entries):
        found.append(task(person_id, referral))
        if referral.request is not None:
            found.append(_request(person_id, referral, referral.request))
    return found


def _identifier(referral_id: str) -> Json:
    return {"system": REFERRAL_ID, "value": f"urn:uuid:{referral_id}"}


def task(person_id: str, referral: Referral) -> Mapped:
    """The Task that tracks a referral from request to completion (or its end)."""
    lines, request = referral.lines, referral.request
    last = lines[-1]
    ended = next((e for e in reversed(lines) if e.status in ("REJECTED", "CANCELLED")), None)
    arrived = next((e for e in lines if e.status == "ARRIVED"), None)
    completed = next((e for e in lines if e.status == "COMPLETED"), None)
    summary = completed.detail.get("discharge_summary") if completed else None
    resource = {
        "resourceType": "Task",
        "id": resource_id("Task", "referral", referral.referral_id),
        "identifier": [_identifier(referral.referral_id)],
        "basedOn": [ref("ServiceRequest", referral_request_id(referral.referral_id))]
        if request
        else [],
        "status": _STATUS.get(last.status or "", "requested"),
        "statusReason": {"text": ended.detail["reason"]}
        if ended and ended.detail.get("reason")
        else None,
        "businessStatus": {"text": last.status},
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


def _request(person_id: str, referral: Referral, request: TimelineEntry) -> Mapped:
    status = _REQUEST_STATUS.get(referral.lines[-1].status or "", "active")
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
