"""PID and PV1 of HL7 v2 as the fields of our patient and encounter events."""

from __future__ import annotations

import re
from typing import Any

from gateway.hl7.values import Hl7ValueError, component, day, text

LOCAL_ID_TYPES = ("MR", "PI", "PT", "PN")
# National person identifier of China (NN + ISO 3166 CHN); some HIS send ID or NI.
RESIDENT_ID_TYPES = ("NNCHN", "NI", "ID")
INSURANCE_ID_TYPES = ("HC", "SS")
SEX = {"M": "MALE", "F": "FEMALE", "O": "UNSPECIFIED", "U": "UNKNOWN", "A": "UNSPECIFIED"}


def _repetitions(segment: Any, field: str) -> list[Any]:
    found = getattr(segment, field, None) if segment is not None else None
    if found is None:
        return []
    return list(found) if hasattr(found, "__iter__") and not isinstance(found, str) else [found]


def identifiers(pid: Any) -> dict[str, str]:
    """PID-3 repetitions by type: local id (MR/PI/…), resident id, insurance number."""
    found: dict[str, str] = {}
    reps = _repetitions(pid, "pid_3")
    for rep in reps:
        value, kind = component(rep, 1), (component(rep, 5) or "").upper()
        if not value:
            continue
        if kind in RESIDENT_ID_TYPES and "resident_id_number" not in found:
            found["resident_id_number"] = value
        elif kind in INSURANCE_ID_TYPES and "medical_insurance_number" not in found:
            found["medical_insurance_number"] = value
        elif kind in LOCAL_ID_TYPES and "local_id" not in found:
            found["local_id"] = value
    if "local_id" not in found:
        first = component(reps[0], 1) if reps else None
        if first is None or first == found.get("resident_id_number"):
            raise Hl7ValueError("PID-3", "no patient identifier of type MR or PI")
        found["local_id"] = first
    return found


def _name(pid: Any) -> str | None:
    reps = _repetitions(pid, "pid_5")
    if not reps:
        return None
    family, given = component(reps[0], 1) or "", component(reps[0], 2) or ""
    # Chinese names are written family name first without a space; Latin names keep one.
    gap = " " if family.isascii() and given.isascii() and family and given else ""
    return (family + gap + given) or None


def _address(pid: Any) -> str | None:
    reps = _repetitions(pid, "pid_11")
    if not reps:
        return None
    # Chinese order: province, city, county, then street and detail.
    parts = [component(reps[0], n) for n in (4, 3, 9, 1, 2)]
    return "".join(p for p in parts if p) or None


def demographics(pid: Any) -> dict[str, Any]:
    """The PatientRegistered/DemographicsUpdated fields PID carries (absent ones omitted)."""
    ids = identifiers(pid)
    fields: dict[str, Any] = {
        "resident_id_number": ids.get("resident_id_number"),
        "medical_insurance_number": ids.get("medical_insurance_number"),
        "name": _name(pid),
        "birth_date": day(text(getattr(pid, "pid_7", None)), "PID-7"),
        "phone": next(
            (component(r, 1) or component(r, 12) for r in _repetitions(pid, "pid_13")), None
        ),
        "address": _address(pid),
    }
    sex = text(getattr(pid, "pid_8", None))
    if sex is not None:
        fields["sex"] = SEX.get(sex.upper(), "UNKNOWN")
    ethnic = next((component(r, 1) for r in _repetitions(pid, "pid_22")), None)
    if ethnic and re.fullmatch(r"\d{2}", ethnic):
        fields["ethnicity"] = ethnic  # GB 3304 code
    return {k: v for k, v in fields.items() if v is not None}


def location(pv1: Any, field: str) -> tuple[str | None, str | None, str | None]:
    """A PL field: (ward / point of care, bed, location description)."""
    value = getattr(pv1, field, None) if pv1 is not None else None
    return component(value, 1), component(value, 3), component(value, 9)


def visit_number(pv1: Any) -> str:
    """PV1-19, the encounter id."""
    found = component(getattr(pv1, "pv1_19", None), 1) if pv1 is not None else None
    if not found:
        raise Hl7ValueError("PV1-19", "the visit number (encounter id) is required")
    return found


def clinician(element: Any) -> str | None:
    """The id of an XCN (component 1)."""
    return component(element, 1)
