"""HL7 v2 messages (parsed by hl7apy) to event dicts of the contracts; docs/hl7v2-mapping.md."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.membership import Membership
from gateway.hl7 import patient as p
from gateway.hl7.values import Hl7ValueError, coded, component, text, timestamp

# event_id = uuid5(events namespace, "<source>|<MSH-3.1>|<MSH-10>|<n>") ("<source>|<MSH-10>|<n>"
# without MSH-3): a resent message gets the same ids, so the gateway's idempotency answers it
# without publishing again; another application's message with the same MSH-10 gets others.
# The namespaces are keyed with the deployment's secret (`gateway_id_key`, see `Namespaces`):
# with public ones any member could compute another's next ids and publish under them first.
HL7_EVENTS = uuid.UUID("6c1d8f1e-3b1e-4c55-9a7e-2f0c1b7d9e41")
HL7_REFERRALS = uuid.UUID("0b6f3f2a-5d2c-4a8e-8f64-7e3d2c1b0a95")


@dataclass(frozen=True)
class Namespaces:
    """The uuid5 namespaces of the event ids and referral ids one deployment derives."""

    events: uuid.UUID = HL7_EVENTS
    referrals: uuid.UUID = HL7_REFERRALS

    @classmethod
    def keyed(cls, key: bytes) -> Namespaces:
        """Namespaces that only a holder of `key` (the gateway's secret) can compute: a member
        that knows another's sender code, control ids and referral numbers cannot derive its ids.
        Without a key (`Namespaces()`, tests and tools) the ids are public."""
        return cls(uuid.uuid5(HL7_EVENTS, key.hex()), uuid.uuid5(HL7_REFERRALS, key.hex()))


ADMISSION_TYPE = {"E": "EMERGENCY", "U": "URGENT", "R": "ELECTIVE", "C": "ELECTIVE", "N": "NEWBORN"}
ADMISSION_SOURCE = {
    **dict.fromkeys(("1", "2", "3", "4", "5", "6"), "REFERRAL"),
    "7": "EMERGENCY_DEPARTMENT",
    "8": "OTHER",
}
DISPOSITION = {
    "01": "HOME",
    "1": "HOME",
    "07": "AGAINST_ADVICE",
    "7": "AGAINST_ADVICE",
    "20": "DECEASED",
    **dict.fromkeys(("02", "03", "04", "05", "06", "2", "3", "4", "5", "6"), "TRANSFERRED_OUTSIDE"),
}
PRIORITY = {"S": "STAT", "A": "URGENT", "R": "ROUTINE", "T": "URGENT"}
URGENCY = {"S": "EMERGENCY", "A": "URGENT", "R": "ROUTINE"}
ABNORMAL = {
    "N": "NORMAL",
    "L": "LOW",
    "H": "HIGH",
    "LL": "CRITICAL_LOW",
    "HH": "CRITICAL_HIGH",
    "A": "ABNORMAL",
    "AA": "ABNORMAL",
}
# OBX-11 (HL7 table 0085) that withdraw a result or carry no value: no event says that yet, and
# a LabResultReported would file a retraction (or an empty value) as a new result.
WITHDRAWN = {
    "W": "posted to the wrong patient: is not mapped, no retraction event",
    "D": "delete the observation: is not mapped, no retraction event",
    "X": "the result cannot be obtained: is not a result",
    "N": "not asked: is not a result",
    "U": "final without the value resent: resend the value with OBX-11 = F",
}
LAB_SECTIONS = {"LAB", "HM", "CH", "MB", "SR", "BLB", "CP", "HEM", "IMM", "SP"}
IMAGING_SECTIONS = {"RAD", "CT", "MR", "US", "NMR", "RX", "XRC", "CUS", "NMS", "VUS"}
_NM = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_COMPARED = re.compile(r"(<=|>=|<|>)\s*(.+)")
CODED_VALUES = {"CE", "CWE", "CNE", "CF"}
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[-~–]\s*(-?\d+(?:\.\d+)?)\s*$")


class UnsupportedMessage(ValueError):  # noqa: N818 - an HL7 condition, answered AR
    """A message type or trigger the gateway does not map (or a processing id it refuses)."""

    def __init__(self, detail: str, code: str = "200", where: str = "MSH-9") -> None:
        super().__init__(detail)
        self.code = code  # HL7 table 0357: 200 unsupported message type, 202 processing id
        self.where = where


class Context:
    """What every event of one message shares: source, control id, times, patient."""

    def __init__(
        self, message: Any, membership: Membership, namespaces: Namespaces | None = None
    ) -> None:
        self.message = message
        self.membership = membership
        self.namespaces = namespaces or Namespaces()
        msh = message.msh
        self.source = component(msh.msh_4, 1) or ""
        # MSH-10 is unique per sending application (MSH-3), not per hospital: a HIS and a LIS
        # count their control ids each on their own.
        self.application = component(msh.msh_3, 1) or ""
        self.receiver = component(msh.msh_6, 1)
        self.control_id = text(msh.msh_10) or ""
        if not self.source:
            raise Hl7ValueError("MSH-4", "the sending facility (institution code) is required")
        if not self.control_id:
            raise Hl7ValueError("MSH-10", "the message control id is required")
        sent = timestamp(text(msh.msh_7), "MSH-7")
        if sent is None:
            raise Hl7ValueError("MSH-7", "the message date/time is required")
        evn = self.first("EVN")
        recorded = timestamp(text(evn.evn_2), "EVN-2") if evn is not None else None
        occurred = timestamp(text(evn.evn_6), "EVN-6") if evn is not None else None
        self.recorded_at: datetime = recorded or sent
        self.occurred_at: datetime = occurred or self.recorded_at
        self._count = 0

    def segments(self, name: str) -> list[Any]:
        """Every segment of a name, in message order (Z-segments are never asked for)."""
        return [s for s in self.message.children if s.name == name]

    def first(self, name: str) -> Any | None:
        """The first segment of a name, or None."""
        found = self.segments(name)
        return found[0] if found else None

    def require(self, name: str) -> Any:
        """The first segment of a name, or a mapping error."""
        found = self.first(name)
        if found is None:
            raise Hl7ValueError(name, f"the message has no {name} segment")
        return found

    def patient_id(self, pid: Any | None = None) -> str:
        """The patient's local id at the source (PID-3 of type MR/PI) in `pid`, else the first."""
        found = pid if pid is not None else self.require("PID")
        return p.identifiers(found, self.source, self.membership)["local_id"]

    def event(
        self, event_type: str, fields: dict[str, Any], pid: Any | None = None, **envelope: Any
    ) -> dict[str, Any]:
        """An event dict with a deterministic id, of the patient of `pid` (else the message's
        first PID); None values are left out."""
        self._count += 1
        sender = f"{self.source}|{self.application}" if self.application else self.source
        event_id = uuid.uuid5(self.namespaces.events, f"{sender}|{self.control_id}|{self._count}")
        head = {
            "event_id": str(event_id),
            "event_type": event_type,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "source": self.source,
            "patient_local_id": self.patient_id(pid),
            **envelope,
        }
        return {"envelope": head, **{k: v for k, v in fields.items() if v is not None}}


def _diagnosis(ctx: Context, dg1: Any, index: int) -> dict[str, Any]:
    concept = coded(dg1.dg1_3, f"DG1({index})-3", default_system="ICD-10")
    if concept is None:
        raise Hl7ValueError(f"DG1({index})-3", "the diagnosis code is required")
    return concept


def _department(pv1: Any) -> tuple[str | None, str | None]:
    code = component(getattr(pv1, "pv1_10", None), 1)
    name = p.location(pv1, "pv1_3")[2]
    return code, name or code


def _admitted(ctx: Context) -> list[dict[str, Any]]:
    pv1 = ctx.require("PV1")
    ward, bed, _ = p.location(pv1, "pv1_3")
    code, name = _department(pv1)
    diagnoses = ctx.segments("DG1")
    admitting = next(
        (d for d in diagnoses if text(d.dg1_6) == "A"), diagnoses[0] if diagnoses else None
    )
    if admitting is None:
        raise Hl7ValueError("DG1", "an admission needs the admitting diagnosis (DG1-6 = A)")
    fields = {
        "encounter_id": p.visit_number(pv1),
        "admission_type": ADMISSION_TYPE.get(text(pv1.pv1_4) or "", "UNKNOWN"),
        "admission_source": ADMISSION_SOURCE.get(text(pv1.pv1_14) or "", "UNKNOWN"),
        "department_code": code,
        "department_name": name,
        "ward_code": ward,
        "bed_number": bed,
        "admitting_diagnosis": _diagnosis(ctx, admitting, 1),
        "attending_clinician_id": p.clinician(pv1.pv1_7),
    }
    return [ctx.event("PatientAdmitted", fields)]


def _transferred(ctx: Context) -> list[dict[str, Any]]:
    pv1 = ctx.require("PV1")
    to_ward, to_bed, _ = p.location(pv1, "pv1_3")
    from_ward, from_bed, _ = p.location(pv1, "pv1_6")
    code, name = _department(pv1)
    fields = {
        "encounter_id": p.visit_number(pv1),
        "from_ward_code": from_ward,
        "from_bed_number": from_bed,
        "to_department_code": code,
        "to_department_name": name,
        "to_ward_code": to_ward,
        "to_bed_number": to_bed,
    }
    return [ctx.event("PatientTransferredWard", fields)]


def _discharged(ctx: Context) -> list[dict[str, Any]]:
    pv1 = ctx.require("PV1")
    to_member = component(getattr(pv1, "pv1_37", None), 1)
    disposition = (
        "TRANSFERRED_TO_MEMBER"
        if to_member
        else DISPOSITION.get(text(pv1.pv1_36) or "", "UNKNOWN" if not text(pv1.pv1_36) else "OTHER")
    )
    diagnoses = [
        {
            "code": _diagnosis(ctx, dg1, i),
            "role": "PRINCIPAL" if text(dg1.dg1_15) == "1" else "SECONDARY",
        }
        for i, dg1 in enumerate(ctx.segments("DG1"), start=1)
    ]
    fields = {
        "encounter_id": p.visit_number(pv1),
        "discharge_disposition": disposition,
        "transferred_to_institution": to_member,
        "discharge_diagnoses": diagnoses,
        "attending_clinician_id": p.clinician(pv1.pv1_7),
    }
    if ctx.first("PV1") is not None:
        discharged = timestamp(text(pv1.pv1_45), "PV1-45")
        if discharged is not None:
            ctx.occurred_at = discharged
    return [ctx.event("PatientDischarged", fields)]


def _registered(ctx: Context) -> list[dict[str, Any]]:
    registered = p.demographics(ctx.require("PID"), "a registration needs")
    out = [ctx.event("PatientRegistered", registered)]
    pv1 = ctx.first("PV1")
    if pv1 is not None and component(getattr(pv1, "pv1_19", None), 1):
        code, name = _department(pv1)
        pv2 = ctx.first("PV2")
        fields = {
            "encounter_id": p.visit_number(pv1),
            "visit_type": "EMERGENCY" if text(pv1.pv1_2) == "E" else "GENERAL",
            "department_code": code,
            "department_name": name,
            "clinician_id": p.clinician(pv1.pv1_7),
            "chief_complaint": component(pv2.pv2_3, 2) or component(pv2.pv2_3, 1) if pv2 else None,
        }
        out.append(ctx.event("OutpatientVisitStarted", fields))
    return out


def _updated(ctx: Context) -> list[dict[str, Any]]:
    return [ctx.event("PatientDemographicsUpdated", p.demographics(ctx.require("PID")))]


def _category(obr: Any, trigger: str) -> str:
    section = (text(getattr(obr, "obr_24", None)) or "").upper()
    if section in LAB_SECTIONS or (not section and trigger == "O21"):
        return "LAB"
    if section in IMAGING_SECTIONS:
        return "IMAGING"
    return "UNKNOWN"


def _orders(ctx: Context) -> list[dict[str, Any]]:
    trigger = component(ctx.message.msh.msh_9, 2) or ""
    pv1 = ctx.first("PV1")
    encounter = component(getattr(pv1, "pv1_19", None), 1) if pv1 is not None else None
    segments = [s for s in ctx.message.children if s.name in ("ORC", "OBR")]
    out: list[dict[str, Any]] = []
    for i, orc in enumerate(segments):
        if orc.name != "ORC":
            continue
        obr = segments[i + 1] if i + 1 < len(segments) and segments[i + 1].name == "OBR" else None
        where = f"ORC({len(out) + 1})"
        control = (text(orc.orc_1) or "").upper()
        order_id = component(orc.orc_2, 1) or (component(obr.obr_2, 1) if obr else None)
        if control in ("CA", "OC", "DC"):
            fields: dict[str, Any] = {
                "order_id": order_id,
                "reason": component(orc.orc_16, 2) or component(orc.orc_16, 1) or "cancelled",
                "cancelled_by_clinician_id": p.clinician(orc.orc_12),
            }
            out.append(ctx.event("OrderCancelled", fields))
            continue
        if control != "NW":
            raise Hl7ValueError(f"{where}-1", f"order control {control!r} is not mapped (NW, CA)")
        if obr is None:
            raise Hl7ValueError(where, "a new order needs its OBR segment")
        priority = component(orc.orc_7, 6) or component(getattr(obr, "obr_27", None), 6) or ""
        fields = {
            "order_id": order_id,
            "category": _category(obr, trigger),
            "code": coded(obr.obr_4, f"{where} OBR-4"),
            "priority": PRIORITY.get(priority.upper(), "ROUTINE" if not priority else "UNKNOWN"),
            "encounter_id": encounter,
            "ordering_clinician_id": p.clinician(orc.orc_12) or p.clinician(obr.obr_16),
            "instructions": text(getattr(obr, "obr_13", None)),
        }
        out.append(ctx.event("OrderPlaced", fields))
    if not out:
        raise Hl7ValueError("ORC", "the message holds no ORC segment")
    return out


def _range(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    match = _RANGE.fullmatch(value)
    if match is None:
        return {"text": value}
    return {"low": float(match.group(1)), "high": float(match.group(2)), "text": value}


def _nm(value: str) -> float | None:
    """An HL7 NM ([+-] digits [. digits]) as a float; None when it is not one."""
    value = value.strip()
    return float(value) if _NM.fullmatch(value) else None


def _sn(rep: Any, where: str) -> tuple[str, float | None]:
    """An SN (comparator ^ num1 [^ separator/suffix ^ num2]) as its text (`<0.5`, `1:128`) and,
    when it is one plain number (no comparator but =, no second number), that number."""
    comparator, first, separator, second = (component(rep, n) or "" for n in (1, 2, 3, 4))
    for number in (first, second):
        if number and _nm(number) is None:
            raise Hl7ValueError(where, f"{text(rep)!r} is not a structured numeric (SN)")
    shown = ("" if comparator == "=" else comparator) + first + separator + second
    plain = comparator in ("", "=") and not separator and not second
    return shown, (_nm(first) if plain and first else None)


def _value(kind: str, segment: Any, where: str) -> tuple[str, float | None]:
    """OBX-5 as text (repetitions joined by ~) and, for NM and plain SN, as a number.

    Coded values (CE/CWE/CNE) read as their text (component 2, else alternate text 5, else the
    code), SN as written out (`<0.5`); never with the message's own separators in them. NM
    with a leading comparator (`<0.5`, which some LIS send as NM) keeps its text, no number."""
    reps = list(segment.obx_5) if segment.obx_5 else []
    if kind == "SN":
        read = [_sn(r, f"{where}-5") for r in reps]
        shown = "~".join(t for t, _ in read)
        return shown, read[0][1] if len(read) == 1 else None
    if kind in CODED_VALUES:
        texts = (next(filter(None, (component(r, n) for n in (2, 5, 1, 4))), "") for r in reps)
        return "~".join(texts), None
    value = "~".join(text(r) or "" for r in reps)
    if kind != "NM":
        return value, None
    number = _nm(value)
    if number is None:
        bounded = _COMPARED.fullmatch(value.strip())
        if bounded is None or _nm(bounded.group(2)) is None:
            raise Hl7ValueError(f"{where}-5", f"{value!r} is not a number though OBX-2 is NM")
    return value, number


def _results(ctx: Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    obr: Any = None
    orc: Any = None  # the ORC of the current OBR's group ({ [ORC] OBR {OBX} }), if it has one
    pending: Any = None
    in_group = 0
    pid: Any = None  # ORU^R01 repeats { PID … { [ORC] OBR {OBX} } }: each OBX is its PID's
    for segment in ctx.message.children:
        if segment.name == "PID":
            pid, obr, orc, pending = segment, None, None, None
        if segment.name == "ORC":
            pending = segment
        if segment.name == "OBR":
            obr, orc, pending, in_group = segment, pending, None, 0
        if segment.name != "OBX":
            continue
        in_group += 1  # the OBX's place under its OBR: its number when OBX-1 is empty
        if obr is None:
            raise Hl7ValueError("OBX", "an OBX must follow its OBR")
        where = f"OBX({len(out) + 1})"
        filler = component(obr.obr_3, 1) or (component(orc.orc_3, 1) if orc else None)
        if not filler:
            raise Hl7ValueError("OBR-3", "the filler order number (result id) is required")
        result_id = f"{filler}-{text(segment.obx_1) or in_group}"
        status = (text(segment.obx_11) or "").upper()
        if status in WITHDRAWN:
            raise Hl7ValueError(f"{where}-11", f"OBX-11 = {status} ({WITHDRAWN[status]})", "103")
        kind = (text(segment.obx_2) or "").upper()
        value, numeric = _value(kind, segment, where)
        unit = component(segment.obx_6, 1)
        observed = timestamp(text(segment.obx_14), f"{where}-14") or timestamp(
            text(obr.obr_7), "OBR-7"
        )
        flag = ABNORMAL.get((text(segment.obx_8) or "").upper(), "UNKNOWN")
        if status == "C":
            fields = {
                "result_id": result_id,
                "kind": "LAB",
                "value_string": value or None,
                "value_numeric": numeric,
                "unit": unit,
                "reference_range": _range(text(segment.obx_7)),
                "abnormal_flag": flag,
                "reason": "corrected result (OBX-11 = C)",
                "amending_clinician_id": p.clinician(segment.obx_16) or p.clinician(obr.obr_32),
            }
            out.append(ctx.event("ResultAmended", fields, pid))
            continue
        fields = {
            "result_id": result_id,
            "order_id": component(obr.obr_2, 1) or (component(orc.orc_2, 1) if orc else None),
            "status": "FINAL"
            if status == "F"
            else "PRELIMINARY"
            if status in ("P", "R", "S", "I")
            else "UNKNOWN",
            "code": coded(segment.obx_3, f"{where}-3"),
            "value_string": value,
            "value_numeric": numeric,
            "unit": unit,
            "reference_range": _range(text(segment.obx_7)),
            "abnormal_flag": flag,
            "specimen": coded(getattr(obr, "obr_15", None), "OBR-15", default_system="HL70487"),
            "observed_at": observed.isoformat() if observed else ctx.occurred_at.isoformat(),
        }
        out.append(ctx.event("LabResultReported", fields, pid))
    if not out:
        raise Hl7ValueError("OBX", "the message holds no OBX segment")
    return out


def _referral_id(ctx: Context, referrer: str | None) -> str:
    """The referral's id: RF1-6.1 when a UUID, else derived from the referring institution's
    code (the request's MSH-4, the answer's MSH-6) and its referral number.

    Never from RF1-6.2, the assigning authority the sender writes: with it another member's
    request could name a referrer's number in the referrer's namespace, and take the referral
    over with an earlier request (found in review). The referrer's code comes from MSH, which
    the sender's credential is checked against."""
    rf1 = ctx.require("RF1")
    given = component(rf1.rf1_6, 1)
    if not given:
        raise Hl7ValueError("RF1-6", "the originating referral identifier is required")
    try:
        return str(uuid.UUID(given))
    except ValueError:
        # Both ends derive the same id from the referrer's code and its referral number.
        return str(uuid.uuid5(ctx.namespaces.referrals, f"{referrer or ctx.source}|{given}"))


def _provider(ctx: Context, role: str) -> str | None:
    for prd in ctx.segments("PRD"):
        if component(prd.prd_1, 1) == role:
            return component(getattr(prd, "prd_7", None), 1) or component(prd.prd_2, 1)
    return None


def _notes(ctx: Context) -> str | None:
    found = [text(n.nte_3) for n in ctx.segments("NTE")]
    return "\n".join(t for t in found if t) or None


def _direction(ctx: Context, origin: str, target: str | None) -> str:
    a, b = ctx.membership.get(origin), ctx.membership.get(target or "")
    if a is None or b is None:
        return "UNKNOWN"
    if a.level.tier == b.level.tier:
        return "LATERAL"
    return "UP" if a.level.tier < b.level.tier else "DOWN"


def _referral_requested(ctx: Context) -> list[dict[str, Any]]:
    rf1 = ctx.require("RF1")
    referral_id = _referral_id(ctx, ctx.source)
    dg1 = ctx.first("DG1")
    fields = {
        "referral_id": referral_id,
        "direction": _direction(ctx, ctx.source, ctx.receiver),
        "from_institution": ctx.source,
        "to_institution": ctx.receiver,
        "reason": _diagnosis(ctx, dg1, 1) if dg1 is not None else None,
        "urgency": URGENCY.get((component(rf1.rf1_2, 1) or "").upper(), "UNKNOWN"),
        "requested_service": component(rf1.rf1_3, 2) or component(rf1.rf1_3, 1),
        "clinical_summary": _notes(ctx),
        "requesting_clinician_id": _provider(ctx, "RP"),
    }
    return [ctx.event("ReferralRequested", fields, correlation_id=referral_id)]


def _referral_answered(ctx: Context) -> list[dict[str, Any]]:
    rf1 = ctx.require("RF1")
    referral_id = _referral_id(ctx, ctx.receiver)
    status = (component(rf1.rf1_1, 1) or "").upper()
    if status == "A":
        arrival = timestamp(text(rf1.rf1_7), "RF1-7")
        fields: dict[str, Any] = {
            "referral_id": referral_id,
            "scheduled_arrival": arrival.isoformat() if arrival else None,
            "accepted_by": _provider(ctx, "RT") or _provider(ctx, "CP"),
        }
        return [ctx.event("ReferralAccepted", fields, correlation_id=referral_id)]
    if status == "R":
        fields = {
            "referral_id": referral_id,
            "reason": component(rf1.rf1_10, 2) or component(rf1.rf1_10, 1) or _notes(ctx),
        }
        return [ctx.event("ReferralRejected", fields, correlation_id=referral_id)]
    raise Hl7ValueError(
        "RF1-1", f"referral status {status!r} is not mapped (A accepted, R rejected)"
    )


MAPPERS: dict[tuple[str, str], Callable[[Context], list[dict[str, Any]]]] = {
    ("ADT", "A01"): _admitted,
    ("ADT", "A02"): _transferred,
    ("ADT", "A03"): _discharged,
    ("ADT", "A04"): _registered,
    ("ADT", "A08"): _updated,
    ("ORM", "O01"): _orders,
    ("OML", "O21"): _orders,
    ("ORU", "R01"): _results,
    ("REF", "I12"): _referral_requested,
    ("RRI", "I12"): _referral_answered,
}


def map_message(
    message: Any, membership: Membership, namespaces: Namespaces | None = None
) -> list[dict[str, Any]]:
    """The event dicts of one parsed message (validated later by the event models); its ids in
    `namespaces` (the gateway's keyed ones; public ones without)."""
    kind = (
        (component(message.msh.msh_9, 1) or "").upper(),
        (component(message.msh.msh_9, 2) or "").upper(),
    )
    mapper = MAPPERS.get(kind)
    if mapper is None:
        raise UnsupportedMessage(f"message type {'^'.join(kind)} is not mapped")
    # MSH-11 (HL7 table 0103): the backbone is production; a hospital's training or debugging
    # messages must not become clinical events. Empty is read as P (many HIS leave it out).
    processing = (component(message.msh.msh_11, 1) or "P").upper()
    if processing != "P":
        detail = f"MSH-11 processing id {processing!r} is not accepted: only P (production)"
        raise UnsupportedMessage(detail, "202", "MSH-11")
    return mapper(Context(message, membership, namespaces))
