"""Sinks through the gateway: JSON batches to POST /v1/events, and HL7 v2 messages over MLLP."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from events.envelope import Event

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"


class GatewayRefused(RuntimeError):  # noqa: N818 - the gateway's answer, not our failure
    """The gateway did not accept a batch; carries its status and problem detail."""

    def __init__(self, status: int, problem: dict[str, Any] | str) -> None:
        detail = problem.get("detail", problem) if isinstance(problem, dict) else problem
        super().__init__(f"the gateway answered {status}: {detail}")
        self.status = status
        self.problem = problem


Tokens = str | Mapping[str, str]


def _by_institution(tokens: Tokens) -> Callable[[str], str | None]:
    """The token for an institution: the one token, or that institution's (None when missing)."""
    if isinstance(tokens, str):
        return lambda _: tokens
    return tokens.get


class GatewaySink:
    """Posts batches to POST /v1/events; a batch returns once Kafka acknowledged all of it.

    `token` is one credential, or one per institution (code -> token): a principal publishes
    only its own institution's events, so a batch is split by source. Events of institutions
    without a token are counted in `skipped`, not sent.
    """

    def __init__(self, base_url: str, token: Tokens, timeout: float = 60.0) -> None:
        self._token = _by_institution(token)
        self._http = httpx.Client(
            base_url=base_url, headers={"Content-Type": "application/json"}, timeout=timeout
        )
        self.sent = 0
        self.skipped: Counter[str] = Counter()

    def write(self, events: Sequence[Event]) -> None:
        """Publish a batch of up to 1,000 events (raises GatewayRefused unless 202)."""
        by_source: dict[str, list[Event]] = {}
        for event in events:
            by_source.setdefault(event.envelope.source, []).append(event)
        for source, batch in by_source.items():
            token = self._token(source)
            if token is None:
                self.skipped[source] += len(batch)
                continue
            body = json.dumps([e.model_dump(mode="json") for e in batch], ensure_ascii=False)
            response = self._http.post(
                "/v1/events", content=body.encode(), headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 202:
                try:
                    problem: dict[str, Any] | str = response.json()
                except ValueError:
                    problem = response.text
                raise GatewayRefused(response.status_code, problem)
            self.sent += len(batch)

    def close(self) -> None:
        """Release the connection."""
        self._http.close()


class HL7Refused(RuntimeError):  # noqa: N818 - the gateway's answer, not our failure
    """The gateway answered an HL7 message with AE or AR; carries the ACK."""

    def __init__(self, ack: str) -> None:
        super().__init__("the gateway did not accept the message: " + ack.replace("\r", " | "))
        self.ack = ack


class MllpSink:
    """Sends events as HL7 v2 over MLLP, one message per event, waiting for each ACK.

    The credential travels in MSH-8. Event types without an HL7 mapping, and events of
    institutions without a token, are counted in `skipped` (by event type), not sent.
    """

    def __init__(self, host: str, port: int, token: Tokens, timeout: float = 60.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._token = _by_institution(token)
        self.sent = 0
        self.skipped: Counter[str] = Counter()

    def write(self, events: Sequence[Event]) -> None:
        """Send each message and wait for its ACK (raises HL7Refused unless AA)."""
        for event in events:
            token = self._token(event.envelope.source)
            message = to_hl7(event, token, event.envelope.event_id.hex) if token else None
            if message is None:
                self.skipped[event.event_type] += 1
                continue
            self._socket.sendall(START_BLOCK + message.encode() + END_BLOCK)
            ack = self._read_ack()
            if "\rMSA|AA|" not in ack:
                raise HL7Refused(ack)
            self.sent += 1

    def _read_ack(self) -> str:
        received = b""
        while not received.endswith(END_BLOCK):
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the MLLP connection before its ACK")
            received += chunk
        return received[received.find(START_BLOCK) + 1 : -len(END_BLOCK)].decode()

    def close(self) -> None:
        """Close the connection."""
        self._socket.close()


# ---- events to ER7: the gateway's mapping (docs/hl7v2-mapping.md) in reverse ----------------

_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"})
_SECTION = {"LAB": "LAB", "IMAGING": "RAD"}
_PRIORITY = {"STAT": "S", "URGENT": "A", "ROUTINE": "R"}
_URGENCY = {"EMERGENCY": "S", "URGENT": "A", "ROUTINE": "R"}
_FLAG = {"NORMAL": "N", "LOW": "L", "HIGH": "H", "CRITICAL_LOW": "LL", "CRITICAL_HIGH": "HH"}
_SYSTEM = {"ICD-10": "I10", "LOINC": "LN", "DICOM": "DCM", "LOCAL": "L"}
_ADMISSION_TYPE = {"EMERGENCY": "E", "URGENT": "U", "ELECTIVE": "R", "NEWBORN": "N"}
_ADMISSION_SOURCE = {"REFERRAL": "1", "EMERGENCY_DEPARTMENT": "7", "OTHER": "8"}
_DISPOSITION = {
    "HOME": "01",
    "AGAINST_ADVICE": "07",
    "DECEASED": "20",
    "TRANSFERRED_OUTSIDE": "02",
}
_SEX = {"MALE": "M", "FEMALE": "F", "UNSPECIFIED": "O", "UNKNOWN": "U"}


def esc(value: object) -> str:
    """A value escaped for ER7 (None is empty)."""
    return "" if value is None else str(value).translate(_ESCAPES)


def _ts(moment: datetime | None) -> str:
    if moment is None:
        return ""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S") + f".{utc.microsecond // 1000:03d}+0000"


def _ce(concept: Any) -> str:
    if concept is None:
        return ""
    system = _SYSTEM.get(concept.system, concept.system)
    return f"{esc(concept.code)}^{esc(concept.display)}^{esc(system)}"


def seg(name: str, fields: Mapping[int, str | None]) -> str:
    """One segment from its numbered fields (already escaped); the others stay empty."""
    values = [""] * (max(fields) + 1)
    for number, value in fields.items():
        values[number] = value or ""
    return "|".join([name, *values[1:]])


def _pid(event: Event, person: Any = None) -> str:
    local = f"{esc(event.envelope.patient_local_id)}^^^{esc(event.envelope.source)}^MR"
    if person is None:
        return seg("PID", {1: "1", 3: local})
    ids = [local]
    if person.resident_id_number:
        ids.append(f"{esc(person.resident_id_number)}^^^CHN^NNCHN")
    if person.medical_insurance_number:
        ids.append(f"{esc(person.medical_insurance_number)}^^^CHN^HC")
    # The whole name goes in XPN.1: splitting a Chinese name into family and given is a guess.
    return seg(
        "PID",
        {
            1: "1",
            3: "~".join(ids),
            5: esc(person.name),
            7: person.birth_date.strftime("%Y%m%d") if person.birth_date else "",
            8: _SEX.get(person.sex or "", ""),
            11: esc(person.address),
            13: esc(person.phone),
            22: esc(person.ethnicity),
        },
    )


def _place(ward: str | None, bed: str | None, name: str | None = None) -> str:
    return f"{esc(ward)}^^{esc(bed)}" + (f"^^^^^^{esc(name)}" if name else "")


def _admitted(e: Any) -> list[str]:
    pv1 = {
        1: "1",
        3: _place(e.ward_code, e.bed_number, e.department_name),
        4: _ADMISSION_TYPE.get(e.admission_type, ""),
        7: esc(e.attending_clinician_id),
        10: esc(e.department_code),
        14: _ADMISSION_SOURCE.get(e.admission_source, ""),
        19: esc(e.encounter_id),
    }
    return [_pid(e), seg("PV1", pv1), seg("DG1", {1: "1", 3: _ce(e.admitting_diagnosis), 6: "A"})]


def _transferred(e: Any) -> list[str]:
    pv1 = {
        1: "1",
        3: _place(e.to_ward_code, e.to_bed_number, e.to_department_name),
        6: _place(e.from_ward_code, e.from_bed_number),
        10: esc(e.to_department_code),
        19: esc(e.encounter_id),
    }
    return [_pid(e), seg("PV1", pv1)]


def _discharged(e: Any) -> list[str]:
    pv1 = {
        1: "1",
        7: esc(e.attending_clinician_id),
        19: esc(e.encounter_id),
        36: _DISPOSITION.get(e.discharge_disposition, ""),
        37: esc(e.transferred_to_institution),
        45: _ts(e.envelope.occurred_at),
    }
    dg1 = [
        seg("DG1", {1: str(i), 3: _ce(d.code), 6: "F", 15: "1" if d.role == "PRINCIPAL" else "2"})
        for i, d in enumerate(e.discharge_diagnoses, start=1)
    ]
    return [_pid(e), seg("PV1", pv1), *dg1]


def _adt(trigger: str, structure: str) -> Callable[[Any], tuple[str, list[str]]]:
    bodies: dict[str, Callable[[Any], list[str]]] = {
        "A01": _admitted,
        "A02": _transferred,
        "A03": _discharged,
        "A04": lambda e: [_pid(e, e)],
        "A08": lambda e: [_pid(e, e)],
    }
    return lambda event: (f"ADT^{trigger}^{structure}", bodies[trigger](event))


def _order_placed(e: Any) -> tuple[str, list[str]]:
    orc = {
        1: "NW",
        2: esc(e.order_id),
        7: "^^^^^" + _PRIORITY.get(e.priority, ""),
        12: esc(e.ordering_clinician_id),
    }
    obr = {
        1: "1",
        2: esc(e.order_id),
        4: _ce(e.code),
        13: esc(e.instructions),
        24: _SECTION.get(e.category, "OTH"),
    }
    visit = [seg("PV1", {1: "1", 19: esc(e.encounter_id)})] if e.encounter_id else []
    return "ORM^O01^ORM_O01", [_pid(e), *visit, seg("ORC", orc), seg("OBR", obr)]


def _order_cancelled(e: Any) -> tuple[str, list[str]]:
    orc = {
        1: "CA",
        2: esc(e.order_id),
        12: esc(e.cancelled_by_clinician_id),
        16: "^" + esc(e.reason),
    }
    return "ORM^O01^ORM_O01", [_pid(e), seg("ORC", orc)]


def _lab_fields(e: Any) -> dict[int, str]:
    return {
        1: "1",
        2: "NM" if e.value_numeric is not None else "ST",
        5: esc(e.value_string),
        6: esc(e.unit),
        7: esc(e.reference_range.text) if e.reference_range and e.reference_range.text else "",
        8: _FLAG.get(e.abnormal_flag or "", ""),
    }


def _lab_result(e: Any) -> tuple[str, list[str]]:
    obr = {
        1: "1",
        2: esc(e.order_id),
        3: esc(e.result_id),
        4: _ce(e.code),
        7: _ts(e.observed_at),
        15: _ce(e.specimen),
    }
    status = {"FINAL": "F", "PRELIMINARY": "P"}.get(e.status, "")
    obx = {**_lab_fields(e), 3: _ce(e.code), 11: status, 14: _ts(e.observed_at)}
    return "ORU^R01^ORU_R01", [_pid(e), seg("OBR", obr), seg("OBX", obx)]


def _lab_amended(e: Any) -> tuple[str, list[str]] | None:
    if e.kind != "LAB" or e.value_string is None:
        return None  # imaging amendments and lab ones without a value have no HL7 mapping
    obx = {**_lab_fields(e), 11: "C", 16: esc(e.amending_clinician_id)}
    obr = seg("OBR", {1: "1", 3: esc(e.result_id)})
    return "ORU^R01^ORU_R01", [_pid(e), obr, seg("OBX", obx)]


def _referral_requested(e: Any) -> tuple[str, list[str]]:
    rf1 = {2: _URGENCY.get(e.urgency, ""), 3: "^" + esc(e.requested_service), 6: str(e.referral_id)}
    out = [_pid(e), seg("RF1", rf1), seg("PRD", {1: "RP", 2: esc(e.requesting_clinician_id)})]
    if e.reason is not None:
        out.append(seg("DG1", {1: "1", 3: _ce(e.reason)}))
    if e.clinical_summary:
        out.append(seg("NTE", {1: "1", 3: esc(e.clinical_summary)}))
    return "REF^I12^REF_I12", out


def _referral_accepted(e: Any) -> tuple[str, list[str]]:
    rf1 = seg("RF1", {1: "A", 6: str(e.referral_id), 7: _ts(e.scheduled_arrival)})
    return "RRI^I12^RRI_I12", [_pid(e), rf1, seg("PRD", {1: "RT", 2: esc(e.accepted_by)})]


def _referral_rejected(e: Any) -> tuple[str, list[str]]:
    rf1 = seg("RF1", {1: "R", 6: str(e.referral_id), 10: "^" + esc(e.reason)})
    return "RRI^I12^RRI_I12", [_pid(e), rf1]


_MESSAGES: dict[str, Callable[[Any], tuple[str, list[str]] | None]] = {
    "PatientAdmitted": _adt("A01", "ADT_A01"),
    "PatientTransferredWard": _adt("A02", "ADT_A02"),
    "PatientDischarged": _adt("A03", "ADT_A03"),
    "PatientRegistered": _adt("A04", "ADT_A01"),
    "PatientDemographicsUpdated": _adt("A08", "ADT_A01"),
    "OrderPlaced": _order_placed,
    "OrderCancelled": _order_cancelled,
    "LabResultReported": _lab_result,
    "ResultAmended": _lab_amended,
    "ReferralRequested": _referral_requested,
    "ReferralAccepted": _referral_accepted,
    "ReferralRejected": _referral_rejected,
}

# The counterpart of a referral message is named in MSH-6 (the gateway reads it from there).
_COUNTERPART: dict[str, Callable[[Any], str | None]] = {
    "ReferralRequested": lambda e: e.to_institution,
}


def to_hl7(event: Event, token: str, control_id: str) -> str | None:
    """The ER7 message the gateway maps back to this event, or None when its type has none."""
    build = _MESSAGES.get(event.event_type)
    built = build(event) if build is not None else None
    if built is None:
        return None
    kind, body = built
    env = event.envelope
    receiver = _COUNTERPART.get(event.event_type, lambda _: None)(event) or "CONSORTIUM"
    msh = (
        f"MSH|^~\\&|SIMULATOR|{esc(env.source)}|GATEWAY|{esc(receiver)}|{_ts(env.recorded_at)}"
        f"|{esc(token)}|{kind}|{esc(control_id)}|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    )
    evn = f"EVN||{_ts(env.recorded_at)}||||{_ts(env.occurred_at)}"
    return "\r".join([msh, evn, *body])
