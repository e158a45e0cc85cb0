"""Orders as FHIR ServiceRequest (lab, imaging, procedure) or MedicationRequest (medication)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gateway.fhir.mapped import Mapped, drop_empty, instant, recorded_by
from gateway.fhir.systems import (
    SNOMED,
    concept,
    local_identifier,
    patient,
    ref,
    resource_id,
)
from projections.record.entries import RESULT_KINDS, EntryKind
from projections.record.queries import TimelineEntry

# FHIR's servicerequest-category examples (SNOMED CT).
_CATEGORIES = {
    "LAB": ("108252007", "Laboratory procedure"),
    "IMAGING": ("363679005", "Imaging"),
    "PROCEDURE": ("387713003", "Surgical procedure"),
}
PRIORITIES = {"ROUTINE": "routine", "URGENT": "urgent", "STAT": "stat", "EMERGENCY": "stat"}


def order_id(institution: str, order: str) -> str:
    """The ServiceRequest id of a member's order."""
    return resource_id("ServiceRequest", institution, order)


def orders(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """One ServiceRequest or MedicationRequest per (member, order id)."""
    items = list(entries)
    statements: dict[tuple[str, str], list[TimelineEntry]] = defaultdict(list)
    resulted = {
        (e.institution, str(e.detail.get("order_id")))
        for e in items
        if e.kind in RESULT_KINDS and e.status == "FINAL" and e.detail.get("order_id")
    }
    for e in items:
        if e.kind is EntryKind.ORDER and e.subject_id:
            statements[(e.institution, e.subject_id)].append(e)
    found = []
    for (institution, order), lines in sorted(statements.items()):
        placed = next((e for e in lines if e.status == "PLACED"), None)
        cancelled = any(e.status == "CANCELLED" for e in lines)
        done = (institution, order) in resulted
        found.append(_order(person_id, institution, order, placed, cancelled, done, lines))
    return found


def _order(
    person_id: str,
    institution: str,
    order: str,
    placed: TimelineEntry | None,
    cancelled: bool,
    done: bool,
    lines: list[TimelineEntry],
) -> Mapped:
    detail = placed.detail if placed else {}
    category = detail.get("category")
    encounter = detail.get("encounter_id")
    common = {
        "meta": recorded_by(institution),
        "identifier": [local_identifier("order", institution, order)],
        "intent": "order",
        "priority": PRIORITIES.get(str(detail.get("priority"))),
        "subject": patient(person_id),
        "encounter": ref("Encounter", resource_id("Encounter", institution, encounter))
        if encounter
        else None,
        "authoredOn": instant(placed.at) if placed else None,
    }
    code = (
        concept(placed.code_system, placed.code, placed.display) if placed else {"text": "unknown"}
    )
    at = placed.at if placed else min(e.at for e in lines)
    if category == "MEDICATION":
        resource = {
            "resourceType": "MedicationRequest",
            "id": resource_id("MedicationRequest", institution, order),
            **common,
            "status": "cancelled" if cancelled else "active",
            "medicationCodeableConcept": code,
            "dosageInstruction": [{"text": detail["instructions"]}]
            if detail.get("instructions")
            else [],
        }
        return Mapped(at, drop_empty(resource))
    kind = _CATEGORIES.get(str(category))
    resource = {
        "resourceType": "ServiceRequest",
        "id": order_id(institution, order),
        **common,
        "status": "revoked" if cancelled else "completed" if done else "active",
        "category": [{"coding": [{"system": SNOMED, "code": kind[0], "display": kind[1]}]}]
        if kind
        else [],
        "code": code,
        "patientInstruction": detail.get("instructions"),
    }
    return Mapped(at, drop_empty(resource))
