"""HL7 v2 acknowledgements (ACK) with MSA and ERR, written as ER7 with every value escaped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from uuid import uuid4

from gateway.hl7.er7 import DEFAULT_VERSION, STANDARD, Delimiters, Message, Value
from gateway.hl7.values import component, text


class AckCode(StrEnum):
    """MSA-1 in original acknowledgement mode."""

    ACCEPT = "AA"  # every event stored in Kafka
    ERROR = "AE"  # the content is wrong: do not resend unchanged
    REJECT = "AR"  # not processed (unparseable, unsupported, or the backbone is down): resend later


@dataclass(frozen=True)
class Hl7Error:
    """One ERR segment: where (segment-field) and what, with an HL7 table 0357 code."""

    code: str  # 101 required field missing, 102 data type error, 200 unsupported type, 207 internal
    text: str
    location: str = ""


_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}


def _plain(value: str) -> str:
    # hl7apy escapes | ~ \ itself but reads ^ and & as separators: escape those two first.
    return value.replace("^", "\\S\\").replace("&", "\\T\\")


def _location(where: str) -> str:
    """ERR-2 (ERL) from 'PID-7' or 'OBX(2)-5': segment^sequence^field."""
    head, _, field = where.partition("-")
    name, _, seq = head.partition("(")
    seq = seq.rstrip(")") or "1"
    if len(name) != 3 or not name.isalnum():
        return ""
    return f"{name}^{seq}^{field}" if field.isdigit() else f"{name}^{seq}"


# Control characters travel as hex escapes, which unescape() reads back: CR would end the segment
# and FS (0x1c) the MLLP frame.
_CONTROLS = {chr(c): f"\\X{c:02X}\\" for c in range(32)}


@lru_cache(maxsize=64)
def _escapes(delimiters: Delimiters) -> dict[int, str]:
    """The translate table that escapes text with one message's delimiters."""
    field, component_, repetition, escape, subcomponent = delimiters
    named = {escape: "E", field: "F", component_: "S", subcomponent: "T", repetition: "R"}
    table = {k: v.replace("\\", escape) for k, v in _CONTROLS.items()}
    table.update({k: f"{escape}{v}{escape}" for k, v in named.items()})
    return str.maketrans(table)


@lru_cache(maxsize=64)
def _controls(escape: str) -> dict[int, str]:
    return str.maketrans({k: v.replace("\\", escape) for k, v in _CONTROLS.items()})


def _er7(value: str | None, delimiters: Delimiters = STANDARD) -> str:
    return (value or "").translate(_escapes(delimiters))


def _written(field: Any) -> str:
    """A field as written: ours (its first repetition) or hl7apy's (the reference)."""
    return str(field.raw if isinstance(field, Value) else field.to_er7()).strip()


def _verbatim(field: Any, delimiters: Delimiters) -> str:
    """A field of the received message as written (components and escapes kept: the ACK has
    the same delimiters), control characters escaped."""
    return _written(field).translate(_controls(delimiters.escape))


def _header(received: Any | None, delimiters: Delimiters) -> str:
    msh = received.msh if received is not None else None
    trigger = component(msh.msh_9, 2) if msh is not None else None
    sep, encoding = delimiters.field, _written(msh.msh_2) if msh is not None else "^~\\&"
    fields = [
        "MSH",
        encoding,
        "CONSORTIUM",
        "GATEWAY",
        _verbatim(msh.msh_3, delimiters) if msh is not None else "",
        _verbatim(msh.msh_4, delimiters) if msh is not None else "",
        datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000"),
        "",
        delimiters.component.join(["ACK", _er7(trigger, delimiters), "ACK"]),
        uuid4().hex[:20],
        (_verbatim(msh.msh_11, delimiters) if msh is not None else "") or "P",
        (component(msh.msh_12, 1) if msh is not None else None) or DEFAULT_VERSION,
        *[""] * 5,
        "UNICODE UTF-8",
    ]
    return sep.join(fields)


def _err(error: Hl7Error, delimiters: Delimiters) -> str:
    sep, comp = delimiters.field, delimiters.component
    kind = comp.join([error.code, _ERROR_NAMES.get(error.code, "Error"), "HL70357"])
    location = _location(error.location).replace("^", comp)
    detail = _er7(error.text[:250], delimiters)
    return sep.join(["ERR", "", location, kind, "E", "", "", "", detail])


def build_ack(
    received: Any | None, code: AckCode, errors: list[Hl7Error], text_message: str = ""
) -> str:
    """The ACK for a message (or for an unparseable one, with what could be read) as ER7, in the
    message's own delimiters, version and processing id (HL7 v2.5 2.9)."""
    delimiters = received.delimiters if isinstance(received, Message) else STANDARD
    sep = delimiters.field
    msa = ["MSA", code.value, _verbatim(received.msh.msh_10, delimiters) if received else ""]
    if text_message:
        msa.append(_er7(text_message[:80], delimiters))
    segments = [_header(received, delimiters), sep.join(msa)]
    return "\r".join(segments + [_err(e, delimiters) for e in errors])


def hl7apy_ack(
    received: Any | None, code: AckCode, errors: list[Hl7Error], text_message: str = ""
) -> str:
    """The ACK as hl7apy builds it: the reference for build_ack in the tests."""
    from hl7apy.core import Message, Segment

    ack = Message("ACK", version="2.5")
    msh = ack.msh
    msh.msh_3 = "CONSORTIUM"
    msh.msh_4 = "GATEWAY"
    if received is not None:
        msh.msh_5 = _written(received.msh.msh_3)
        msh.msh_6 = _written(received.msh.msh_4)
    msh.msh_7 = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    trigger = component(received.msh.msh_9, 2) if received is not None else None
    msh.msh_9 = f"ACK^{trigger}^ACK" if trigger else "ACK^^ACK"
    msh.msh_10 = uuid4().hex[:20]
    msh.msh_11 = (_written(received.msh.msh_11) if received is not None else "") or "P"
    msh.msh_12 = (_written(received.msh.msh_12) if received is not None else "") or "2.5"
    msh.msh_18 = "UNICODE UTF-8"
    msa = Segment("MSA", version="2.5")
    msa.msa_1 = code.value
    msa.msa_2 = (text(received.msh.msh_10) if received is not None else None) or ""
    if text_message:
        msa.msa_3 = _plain(text_message[:80])
    ack.add(msa)
    for error in errors:
        err = Segment("ERR", version="2.5")
        location = _location(error.location)
        if location:
            err.err_2 = location
        err.err_3 = f"{error.code}^{_ERROR_NAMES.get(error.code, 'Error')}^HL70357"
        err.err_4 = "E"
        err.err_8 = _plain(error.text[:250])
        ack.add(err)
    return str(ack.to_er7())
