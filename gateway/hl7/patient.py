"""PID and PV1 of HL7 v2 as the fields of our patient and encounter events."""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Any

from gateway.hl7.er7 import Value
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


def _assigners(rep: Any) -> set[str]:
    """The institution codes a CX names: CX.4.1 (assigning authority), CX.6.1 (facility)."""
    sub = rep.delimiters.subcomponent if isinstance(rep, Value) else "&"  # hl7apy's: &
    found = (component(rep, n) for n in (4, 6))
    return {f.split(sub, 1)[0].strip() for f in found if f} - {""}


def identifiers(
    pid: Any, source: str | None = None, members: Container[str] = ()
) -> dict[str, str]:
    """PID-3 repetitions by type: local id (MR/PI/…), resident id, insurance number.

    The local id is the source's own: of the repetitions of a local type, one assigned by
    `source` (CX.4.1 assigning authority or CX.6.1 facility) comes first, then one no other
    member assigned, and one that names another institution code of `members` only last."""
    found: dict[str, str] = {}
    reps = _repetitions(pid, "pid_3")
    local: list[tuple[int, str]] = []  # (0 own, 1 unassigned, 2 another member's; value)
    for rep in reps:
        value, kind = component(rep, 1), (component(rep, 5) or "").upper()
        if not value:
            continue
        if kind in RESIDENT_ID_TYPES and "resident_id_number" not in found:
            found["resident_id_number"] = value
        elif kind in INSURANCE_ID_TYPES and "medical_insurance_number" not in found:
            found["medical_insurance_number"] = value
        elif kind in LOCAL_ID_TYPES:
            assigners = _assigners(rep) if source is not None else set()
            other = any(a != source and a in members for a in assigners)
            local.append((0 if source in assigners else 2 if other else 1, value))
    if local:
        found["local_id"] = min(local, key=lambda rank: rank[0])[1]  # the first of the best
    else:
        first = component(reps[0], 1) if reps else None
        if first is None or first == found.get("resident_id_number"):
            raise Hl7ValueError("PID-3", "no patient identifier of type MR or PI")
        found["local_id"] = first
    return found


# XPN.7 name type (HL7 table 0200): legal first, then untyped/unspecified/display/registered
# names, aliases, nicknames and the like last; XPN.8 (table 4000): ideographic (汉字) before
# untyped, alphabetic or phonetic (pinyin) last.
_NAME_TYPE_RANK = {"L": 0, "": 1, "U": 1, "D": 1, "R": 1}
_NAME_REPRESENTATION_RANK = {"I": 0, "": 1}


def _name(pid: Any) -> str | None:
    named = [
        (
            _NAME_TYPE_RANK.get((component(rep, 7) or "").upper(), 2),
            _NAME_REPRESENTATION_RANK.get((component(rep, 8) or "").upper(), 2),
            index,
            rep,
        )
        for index, rep in enumerate(_repetitions(pid, "pid_5"))
        if component(rep, 1) or component(rep, 2)
    ]
    if not named:
        return None
    chosen = min(named, key=lambda rank: rank[:3])[3]
    family, given = component(chosen, 1) or "", component(chosen, 2) or ""
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


def demographics(pid: Any, birth_day_needed: str | None = None) -> dict[str, Any]:
    """The PatientRegistered/DemographicsUpdated fields PID carries (absent ones omitted; a
    birth date of year or month precision too, unless `birth_day_needed` names who needs it)."""
    ids = identifiers(pid)
    fields: dict[str, Any] = {
        "resident_id_number": ids.get("resident_id_number"),
        "medical_insurance_number": ids.get("medical_insurance_number"),
        "name": _name(pid),
        "birth_date": day(text(getattr(pid, "pid_7", None)), "PID-7", birth_day_needed),
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
