"""Every event type by name, and the conversions between events and plain dicts (JSON, Avro)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from events.consent import ConsentGranted, ConsentRevoked
from events.derived import RepeatCheckDerived, TransferDerived
from events.encounter import (
    BedCensusReported,
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
    PatientTransferredWard,
)
from events.envelope import Event
from events.order import OrderCancelled, OrderPlaced
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
from events.person import (
    MatchReviewDecided,
    MatchReviewRequested,
    PersonLinked,
    PersonsMerged,
    PersonUnlinked,
)
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)
from events.result import ImagingReportIssued, LabResultReported, ResultAmended
from events.validation import Checks

EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        PatientRegistered,
        PatientDemographicsUpdated,
        PatientIdentifiersMerged,
        PatientAdmitted,
        PatientDischarged,
        PatientTransferredWard,
        OutpatientVisitStarted,
        OutpatientVisitCompleted,
        BedCensusReported,
        OrderPlaced,
        OrderCancelled,
        LabResultReported,
        ImagingReportIssued,
        ResultAmended,
        ReferralRequested,
        ReferralAccepted,
        ReferralRejected,
        ReferralCancelled,
        ReferralPatientArrived,
        ReferralCompleted,
        ConsentGranted,
        ConsentRevoked,
        PersonLinked,
        PersonUnlinked,
        PersonsMerged,
        MatchReviewRequested,
        MatchReviewDecided,
        TransferDerived,
        RepeatCheckDerived,
    )
}


class UnknownEventType(ValueError):  # noqa: N818 - the name the other parts use
    """An event_type that names no event of the contracts."""

    def __init__(self, event_type: object) -> None:
        known = ", ".join(sorted(EVENT_TYPES))
        super().__init__(f"unknown event type {event_type!r}; known types: {known}")
        self.event_type = event_type


def model_for(event_type: str) -> type[Event]:
    """The model of an event type, or UnknownEventType."""
    try:
        return EVENT_TYPES[event_type]
    except (KeyError, TypeError):
        raise UnknownEventType(event_type) from None


def _event_type_of(data: object) -> str:
    """data["envelope"]["event_type"], or a ValidationError pointing at what is missing."""
    envelope = data.get("envelope") if isinstance(data, Mapping) else None
    if isinstance(envelope, Mapping) and "event_type" in envelope:
        return str(envelope["event_type"])
    missing: InitErrorDetails = {
        "type": "missing",
        "loc": ("envelope", "event_type") if isinstance(data, Mapping) else (),
        "input": data,
    }
    raise ValidationError.from_exception_data("Event", [missing], hide_input=True)


def parse_event(data: Mapping[str, Any], *, checks: Checks | None = None) -> Event:
    """Validate a JSON-like dict as the event its envelope names, applying every rule."""
    return model_for(_event_type_of(data)).model_validate(data, context=checks)


def from_record(record: Mapping[str, Any]) -> Event:
    """Rebuild an event from what fastavro read back; rules tied to today's clock are skipped."""
    checks: Checks = {"replay": True}
    return model_for(_event_type_of(record)).model_validate(record, context=checks)


def to_record(event: Event) -> dict[str, Any]:
    """The dict fastavro writes for an event: enums as symbols, arrays as lists."""
    return {name: _avro_ready(value) for name, value in event.model_dump().items()}


def _avro_ready(value: Any) -> Any:
    # UUIDs, datetimes and dates pass through: fastavro's logical types accept them as they are.
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _avro_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_avro_ready(item) for item in value]
    return value
