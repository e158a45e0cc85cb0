"""Encounters (admissions and visits) and their diagnoses as FHIR Encounter and Condition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gateway.fhir.mapped import Mapped, drop_empty, instant, recorded_by
from gateway.fhir.systems import (
    BASE,
    CONDITION_CATEGORY,
    DIAGNOSIS_ROLE,
    DISCHARGE_DISPOSITION,
    V3_ACT_CODE,
    Json,
    code_token,
    concept,
    local_identifier,
    organization,
    patient,
    ref,
    resource_id,
)
from projections.record.entries import EntryKind
from projections.record.queries import TimelineEntry

_INPATIENT = frozenset({"PatientAdmitted", "PatientDischarged", "PatientTransferredWard"})
_STARTS = frozenset({"ADMITTED", "VISIT_STARTED"})
_ENDS = frozenset({"DISCHARGED", "VISIT_COMPLETED"})
# Diagnosis stages → FHIR diagnosis-role (a visit's and a referral's final diagnoses have none).
_ROLES = {"ADMITTING": ("AD", "Admission diagnosis"), "DISCHARGE": ("DD", "Discharge diagnosis")}
_ENCOUNTER_STAGES = frozenset({"ADMITTING", "DISCHARGE", "VISIT"})
_DISPOSITIONS = {
    "HOME": ("home", "Home"),
    "TRANSFERRED_TO_MEMBER": ("other-hcf", "Other healthcare facility"),
    "TRANSFERRED_OUTSIDE": ("other-hcf", "Other healthcare facility"),
    "AGAINST_ADVICE": ("aadvice", "Left against advice"),
    "DECEASED": ("exp", "Expired"),
    "OTHER": ("oth", "Other"),
}


def condition_id(entry: TimelineEntry) -> str:
    """The Condition id of a diagnosis entry (one per diagnosis stated)."""
    return resource_id("Condition", entry.institution, entry.entry_id)


def conditions(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """A Condition (encounter diagnosis) for every diagnosis an encounter or referral stated."""
    found = []
    for e in entries:
        if e.kind is not EntryKind.DIAGNOSIS:
            continue
        confirmed = e.status != "ADMITTING"
        encounter = (
            ref("Encounter", resource_id("Encounter", e.institution, e.subject_id))
            if e.subject_id and e.status in _ENCOUNTER_STAGES
            else None
        )
        resource = {
            "resourceType": "Condition",
            "id": condition_id(e),
            "meta": recorded_by(e.institution),
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed" if confirmed else "provisional",
                    }
                ]
            },
            "category": [
                {"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}
            ],
            "code": concept(e.code_system, e.code, e.display),
            "subject": patient(person_id),
            "encounter": encounter,
            "recordedDate": instant(e.at),
        }
        found.append(Mapped(e.at, drop_empty(resource)))
    return found


def encounters(person_id: str, entries: Iterable[TimelineEntry]) -> list[Mapped]:
    """One Encounter per (member, encounter id), folded from its admission/visit entries."""
    lines: dict[tuple[str, str], list[TimelineEntry]] = defaultdict(list)
    diagnoses: dict[tuple[str, str], list[TimelineEntry]] = defaultdict(list)
    for e in entries:
        if e.subject_id is None:
            continue
        if e.kind in (EntryKind.ENCOUNTER, EntryKind.TRANSFER):
            lines[(e.institution, e.subject_id)].append(e)
        elif e.kind is EntryKind.DIAGNOSIS and e.status in _ENCOUNTER_STAGES:
            diagnoses[(e.institution, e.subject_id)].append(e)
    found = []
    for (institution, encounter_id), items in sorted(lines.items()):
        items.sort(key=lambda e: (e.at, e.entry_id))
        found.append(_encounter(person_id, institution, encounter_id, items, diagnoses))
    return found


def _encounter(
    person_id: str,
    institution: str,
    encounter_id: str,
    items: list[TimelineEntry],
    diagnoses: dict[tuple[str, str], list[TimelineEntry]],
) -> Mapped:
    start = next((e for e in items if e.status in _STARTS), None)
    end = next((e for e in reversed(items) if e.status in _ENDS), None)
    inpatient = any(e.event_type in _INPATIENT for e in items)
    detail: Json = {}
    for e in items:  # later statements complete earlier ones
        detail.update({k: v for k, v in e.detail.items() if v is not None})
    if inpatient:
        klass = {"system": V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
    elif detail.get("visit_type") == "EMERGENCY":
        klass = {"system": V3_ACT_CODE, "code": "EMER", "display": "emergency"}
    else:
        klass = {"system": V3_ACT_CODE, "code": "AMB", "display": "ambulatory"}
    department = None
    if department_code := code_token(detail.get("department_code")):
        department = {
            "coding": [
                {
                    "system": f"{BASE}/CodeSystem/department/{institution}",
                    "code": department_code,
                    "display": detail.get("department_name"),
                }
            ],
            "text": detail.get("department_name"),
        }
    stated = sorted(diagnoses.get((institution, encounter_id), []), key=lambda e: e.entry_id)
    resource = {
        "resourceType": "Encounter",
        "id": resource_id("Encounter", institution, encounter_id),
        "meta": recorded_by(institution),
        "identifier": [local_identifier("encounter", institution, encounter_id)],
        "status": "finished" if end is not None else "in-progress",
        "class": klass,
        "type": [department],
        "subject": patient(person_id),
        "period": {
            "start": instant(start.at) if start else None,
            "end": instant(end.at) if end else None,
        },
        "reasonCode": [{"text": detail["chief_complaint"]}]
        if detail.get("chief_complaint")
        else [],
        "diagnosis": [_diagnosis(d) for d in stated],
        "hospitalization": _hospitalization(items) if inpatient else None,
        "location": [
            {"location": {"display": e.detail["to_ward_code"]}, "period": {"start": instant(e.at)}}
            for e in items
            if e.status == "WARD" and e.detail.get("to_ward_code")
        ],
        "serviceProvider": organization(institution),
    }
    return Mapped((start or items[0]).at, drop_empty(resource))


def _diagnosis(entry: TimelineEntry) -> Json:
    role = _ROLES.get(entry.status or "")
    return {
        "condition": ref("Condition", condition_id(entry)),
        "use": {"coding": [{"system": DIAGNOSIS_ROLE, "code": role[0], "display": role[1]}]}
        if role
        else None,
        "rank": 1 if entry.detail.get("role") == "PRINCIPAL" else None,
    }


def _hospitalization(items: list[TimelineEntry]) -> Json:
    discharge = next((e for e in reversed(items) if e.status == "DISCHARGED"), None)
    if discharge is None:
        return {}
    disposition = _DISPOSITIONS.get(str(discharge.detail.get("discharge_disposition")))
    target = discharge.detail.get("transferred_to_institution")
    return {
        "dischargeDisposition": {
            "coding": [
                {"system": DISCHARGE_DISPOSITION, "code": disposition[0], "display": disposition[1]}
            ]
        }
        if disposition
        else None,
        "destination": {"display": target} if target else None,
    }
