"""What the shared record keeps of one clinical event: its timeline entries (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from events.consent import ConsentGranted, ConsentRevoked
from events.encounter import (
    DischargeDisposition,
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
    PatientTransferredWard,
)
from events.envelope import CodedConcept, Diagnosis, Event
from events.order import OrderCancelled, OrderPlaced
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralEvent,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)
from events.result import (
    IMAGING_FIELDS,
    ImagingReportIssued,
    LabResultReported,
    ResultAmended,
    ResultKind,
)

Json = dict[str, Any]


class EntryKind(StrEnum):
    """The kinds of entry a timeline shows."""

    ENCOUNTER = "ENCOUNTER"
    DIAGNOSIS = "DIAGNOSIS"
    ORDER = "ORDER"
    LAB_RESULT = "LAB_RESULT"
    IMAGING_REPORT = "IMAGING_REPORT"
    REFERRAL = "REFERRAL"
    TRANSFER = "TRANSFER"
    CONSENT = "CONSENT"


RESULT_KINDS = frozenset({EntryKind.LAB_RESULT, EntryKind.IMAGING_REPORT})
TRANSFER_DISPOSITIONS = frozenset(
    {DischargeDisposition.TRANSFERRED_TO_MEMBER, DischargeDisposition.TRANSFERRED_OUTSIDE}
)
# The event types the record keeps (besides the person family's link decisions).
CLINICAL_TYPES = frozenset(
    {
        "PatientAdmitted",
        "PatientDischarged",
        "PatientTransferredWard",
        "OutpatientVisitStarted",
        "OutpatientVisitCompleted",
        "OrderPlaced",
        "OrderCancelled",
        "LabResultReported",
        "ImagingReportIssued",
        "ResultAmended",
        "ReferralRequested",
        "ReferralAccepted",
        "ReferralRejected",
        "ReferralCancelled",
        "ReferralPatientArrived",
        "ReferralCompleted",
        "ConsentGranted",
        "ConsentRevoked",
    }
)
_REFERRAL_STATUS: dict[type[ReferralEvent], str] = {
    ReferralRequested: "REQUESTED",
    ReferralAccepted: "ACCEPTED",
    ReferralRejected: "REJECTED",
    ReferralCancelled: "CANCELLED",
    ReferralPatientArrived: "ARRIVED",
    ReferralCompleted: "COMPLETED",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a local patient's record; an event may give several (a discharge's diagnoses)."""

    event_id: UUID
    seq: int
    kind: EntryKind
    institution: str
    local_id: str
    occurred_at: datetime
    event_type: str
    subject_id: str | None  # the encounter, order, result, referral or consent it is about
    status: str | None
    code: CodedConcept | None = None
    detail: Json = field(default_factory=dict)  # JSON-ready: what else the event said

    @property
    def entry_id(self) -> str:
        """Stable id of the entry: the event id and the entry's place in it."""
        return f"{self.event_id}:{self.seq}"


def _body(event: Event, *drop: str) -> Json:
    """The event's fields (without envelope) as JSON-ready values."""
    return event.model_dump(mode="json", exclude={"envelope", *drop})


def entries_of(event: Event) -> tuple[Entry, ...]:
    """The entries an event adds to its local patient's record (none for other events)."""
    env = event.envelope
    if env.patient_local_id is None:
        return ()
    made: list[Entry] = []

    def add(
        kind: EntryKind,
        subject: str | None,
        status: str | None,
        code: CodedConcept | None = None,
        detail: Json | None = None,
    ) -> None:
        made.append(
            Entry(
                env.event_id,
                len(made),
                kind,
                env.source,
                env.patient_local_id or "",
                env.occurred_at,
                event.event_type,
                subject,
                status,
                code,
                detail or {},
            )
        )

    if not _encounter(event, add):
        _other(event, add)
    return tuple(made)


class _Add(Protocol):
    def __call__(
        self,
        kind: EntryKind,
        subject: str | None,
        status: str | None,
        code: CodedConcept | None = None,
        detail: Json | None = None,
    ) -> None: ...


def _diagnoses(add: _Add, subject: str, stage: str, items: tuple[Diagnosis, ...]) -> None:
    for d in items:
        add(EntryKind.DIAGNOSIS, subject, stage, d.code, {"role": d.role.value})


def _encounter(event: Event, add: _Add) -> bool:
    """Entries of an encounter event (with its diagnoses and transfers); False for others."""
    match event:
        case PatientAdmitted():
            add(EntryKind.ENCOUNTER, event.encounter_id, "ADMITTED", None, _body(event))
            add(EntryKind.DIAGNOSIS, event.encounter_id, "ADMITTING", event.admitting_diagnosis)
        case PatientDischarged():
            detail = _body(event, "discharge_diagnoses")
            add(EntryKind.ENCOUNTER, event.encounter_id, "DISCHARGED", None, detail)
            _diagnoses(add, event.encounter_id, "DISCHARGE", event.discharge_diagnoses)
            disposition = event.discharge_disposition
            if disposition in TRANSFER_DISPOSITIONS:
                add(EntryKind.TRANSFER, event.encounter_id, disposition.value, None, detail)
        case PatientTransferredWard():
            add(EntryKind.TRANSFER, event.encounter_id, "WARD", None, _body(event))
        case OutpatientVisitStarted():
            add(EntryKind.ENCOUNTER, event.encounter_id, "VISIT_STARTED", None, _body(event))
        case OutpatientVisitCompleted():
            detail = _body(event, "diagnoses")
            add(EntryKind.ENCOUNTER, event.encounter_id, "VISIT_COMPLETED", None, detail)
            _diagnoses(add, event.encounter_id, "VISIT", event.diagnoses)
        case _:
            return False
    return True


def _other(event: Event, add: _Add) -> None:
    """Entries of order, result, referral and consent events."""
    match event:
        case OrderPlaced():
            add(EntryKind.ORDER, event.order_id, "PLACED", event.code, _body(event, "code"))
        case OrderCancelled():
            add(EntryKind.ORDER, event.order_id, "CANCELLED", None, _body(event))
        case LabResultReported():
            detail = _body(event, "code")
            add(EntryKind.LAB_RESULT, event.result_id, event.status.value, event.code, detail)
        case ImagingReportIssued():
            add(EntryKind.IMAGING_REPORT, event.report_id, "FINAL", None, _body(event))
        case ResultAmended():
            add(_amended_kind(event), event.result_id, "AMENDED", None, _body(event))
        case ReferralEvent():
            status = _REFERRAL_STATUS.get(type(event))
            code = event.reason if isinstance(event, ReferralRequested) else None
            detail = _body(event, "reason", "final_diagnoses")
            add(EntryKind.REFERRAL, str(event.referral_id), status, code, detail)
            if isinstance(event, ReferralCompleted):
                _diagnoses(add, str(event.referral_id), "REFERRAL_FINAL", event.final_diagnoses)
        case ConsentGranted():
            add(EntryKind.CONSENT, str(event.consent_id), "GRANTED", None, _body(event))
        case ConsentRevoked():
            add(EntryKind.CONSENT, str(event.consent_id), "REVOKED", None, _body(event))


def _amended_kind(event: ResultAmended) -> EntryKind:
    """The kind an amendment corrects (an UNKNOWN kind is read from the fields it sets)."""
    if event.kind is ResultKind.IMAGING:
        return EntryKind.IMAGING_REPORT
    if event.kind is ResultKind.LAB:
        return EntryKind.LAB_RESULT
    imaging = any(getattr(event, name) is not None for name in IMAGING_FIELDS)
    return EntryKind.IMAGING_REPORT if imaging else EntryKind.LAB_RESULT


def entry_to_json(entry: Entry) -> Json:
    """The entry as stored (jsonb) and read back by entry_from_json."""
    return {
        "event_id": str(entry.event_id),
        "seq": entry.seq,
        "kind": entry.kind.value,
        "institution": entry.institution,
        "local_id": entry.local_id,
        "occurred_at": entry.occurred_at.isoformat(),
        "event_type": entry.event_type,
        "subject_id": entry.subject_id,
        "status": entry.status,
        "code": None if entry.code is None else entry.code.model_dump(),
        "detail": entry.detail,
    }


def entry_from_json(data: Json) -> Entry:
    """An entry from entry_to_json's form."""
    code = data["code"]
    return Entry(
        UUID(str(data["event_id"])),
        int(data["seq"]),
        EntryKind(data["kind"]),
        data["institution"],
        data["local_id"],
        datetime.fromisoformat(data["occurred_at"]),
        data["event_type"],
        data["subject_id"],
        data["status"],
        None if code is None else CodedConcept(**code),
        data["detail"],
    )
