"""Lab results as FHIR Observation (grouped per order in a DiagnosticReport); imaging reports."""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gateway.fhir.mapped import Mapped, blank, drop_empty, instant, recorded_by
from gateway.fhir.orders import order_id
from gateway.fhir.systems import (
    DIAGNOSTIC_SERVICE,
    DICOM_UID,
    OBSERVATION_CATEGORY,
    V3_INTERPRETATION,
    Json,
    concept,
    local_identifier,
    organization,
    patient,
    ref,
    resource_id,
)
from projections.record.entries import EntryKind
from projections.record.queries import TimelineEntry

_INTERPRETATION = {
    "NORMAL": ("N", "Normal"),
    "LOW": ("L", "Low"),
    "HIGH": ("H", "High"),
    "CRITICAL_LOW": ("LL", "Critical low"),
    "CRITICAL_HIGH": ("HH", "Critical high"),
    "ABNORMAL": ("A", "Abnormal"),
}


def _status(entry: TimelineEntry) -> str:
    """FHIR status of a result: an amended final result is `amended`."""
    if entry.status == "PRELIMINARY":
        return "preliminary"
    if entry.status == "FINAL":
        return "amended" if entry.amendments else "final"
    return "unknown"


def _quantity(value: Any, unit: Any) -> Json | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return {"value": value, "unit": unit if isinstance(unit, str) and unit else None}


def observation_id(entry: TimelineEntry) -> str:
    """The Observation id of a lab result."""
    return resource_id("Observation", entry.institution, entry.subject_id or entry.entry_id)


def observations(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """One Observation per lab result, in its current (amended) form."""
    return [_observation(person_id, e) for e in entries if e.kind is EntryKind.LAB_RESULT]


def _observation(person_id: str, e: TimelineEntry) -> Mapped:
    d = e.detail
    quantity = _quantity(d.get("value_numeric"), d.get("unit"))
    flag = _INTERPRETATION.get(str(d.get("abnormal_flag")))
    ranges = d.get("reference_range") or {}
    unit = d.get("unit") if isinstance(d.get("unit"), str) else None
    reference = {
        "low": _quantity(ranges.get("low"), unit),
        "high": _quantity(ranges.get("high"), unit),
        "text": ranges.get("text"),
    }
    specimen = d.get("specimen") or {}
    resource = {
        "resourceType": "Observation",
        "id": observation_id(e),
        "meta": recorded_by(e.institution),
        "identifier": [local_identifier("result", e.institution, e.subject_id or e.entry_id)],
        "basedOn": [ref("ServiceRequest", order_id(e.institution, d["order_id"]))]
        if d.get("order_id")
        else [],
        "status": _status(e),
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]},
        ],
        "code": concept(e.code_system, e.code, e.display),
        "subject": patient(person_id),
        "effectiveDateTime": instant(e.at),
        "issued": instant(d.get("reported_at")),
        "performer": [organization(e.institution)],
        "valueQuantity": quantity,
        "valueString": None if quantity else d.get("value_string") or None,
        "interpretation": [
            {"coding": [{"system": V3_INTERPRETATION, "code": flag[0], "display": flag[1]}]}
        ]
        if flag
        else [],
        "referenceRange": [reference] if drop_empty(reference) else [],
        "note": [{"text": f"amended {e.amendments} time(s), last at {d.get('amended_at')}"}]
        if e.amendments
        else [],
        "specimen": {"display": specimen.get("display")} if specimen.get("display") else None,
    }
    return Mapped(e.at, drop_empty(resource))


def reports(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """A DiagnosticReport per imaging report, and one per lab order grouping its results."""
    items = list(entries)
    orders = {
        (e.institution, e.subject_id): e
        for e in items
        if e.kind is EntryKind.ORDER and e.status == "PLACED"
    }
    panels: dict[tuple[str, str], list[TimelineEntry]] = defaultdict(list)
    found = []
    for e in items:
        if e.kind is EntryKind.IMAGING_REPORT:
            found.append(_imaging(person_id, e))
        elif e.kind is EntryKind.LAB_RESULT and e.detail.get("order_id"):
            panels[(e.institution, str(e.detail["order_id"]))].append(e)
    for (institution, order), results in sorted(panels.items()):
        found.append(
            _panel(person_id, institution, order, orders.get((institution, order)), results)
        )
    return found


def _panel(
    person_id: str,
    institution: str,
    order: str,
    placed: TimelineEntry | None,
    results: list[TimelineEntry],
) -> Mapped:
    results.sort(key=lambda e: (e.at, e.entry_id))
    statuses = {_status(e) for e in results}
    status = (
        "preliminary"
        if "preliminary" in statuses or "unknown" in statuses
        else "amended"
        if "amended" in statuses
        else "final"
    )
    head = placed or results[0]
    reported = [str(e.detail["reported_at"]) for e in results if e.detail.get("reported_at")]
    resource = {
        "resourceType": "DiagnosticReport",
        "id": resource_id("DiagnosticReport", institution, f"order|{order}"),
        "meta": recorded_by(institution),
        "basedOn": [ref("ServiceRequest", order_id(institution, order))],
        "status": status,
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB"}]}],
        "code": concept(head.code_system, head.code, head.display),
        "subject": patient(person_id),
        "effectiveDateTime": instant(results[-1].at),
        "issued": instant(max(reported, key=datetime.fromisoformat)) if reported else None,
        "performer": [organization(institution)],
        "result": [ref("Observation", observation_id(e)) for e in results],
    }
    # Sorted by its first result: a later result of the order must not move the report ahead of
    # a client's paging cursor (it would be skipped); an earlier one at most repeats it.
    return Mapped(results[0].at, drop_empty(resource))


def _imaging(person_id: str, e: TimelineEntry) -> Mapped:
    d = e.detail
    findings = d.get("findings")
    title = " ".join(str(d[k]) for k in ("modality", "body_site") if not blank(d.get(k)))
    title = title or "imaging report"
    code = concept(e.code_system, e.code, e.display) if e.code else {"text": title}
    uid = d.get("study_instance_uid")
    resource = {
        "resourceType": "DiagnosticReport",
        "id": resource_id("DiagnosticReport", e.institution, e.subject_id or e.entry_id),
        "meta": recorded_by(e.institution),
        "identifier": [
            local_identifier("result", e.institution, e.subject_id or e.entry_id),
            {"system": DICOM_UID, "value": f"urn:oid:{uid}"} if uid else None,
        ],
        "basedOn": [ref("ServiceRequest", order_id(e.institution, d["order_id"]))]
        if d.get("order_id")
        else [],
        "status": _status(e),
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "RAD"}]}],
        "code": code,
        "subject": patient(person_id),
        "effectiveDateTime": instant(e.at),
        "issued": instant(d.get("reported_at")),
        "performer": [organization(e.institution)],
        "conclusion": d.get("impression"),
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "zh-CN",
                "data": base64.b64encode(str(findings).encode()).decode(),
                "title": "findings",
            }
        ]
        if not blank(findings)
        else [],
    }
    return Mapped(e.at, drop_empty(resource))
