"""HL7 v2 acknowledgements (ACK) with MSA and ERR, written as ER7 with every value escaped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

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
_ESCAPES = str.maketrans(
    {
        "\\": "\\E\\",
        "|": "\\F\\",
        "^": "\\S\\",
        "&": "\\T\\",
        "~": "\\R\\",
        **{chr(c): f"\\X{c:02X}\\" for c in range(32)},
    }
)


def _er7(value: str | None) -> str:
    return (value or "").translate(_ESCAPES)


def _header(received: Any | None) -> str:
    msh = received.msh if received is not None else None
    trigger = component(msh.msh_9, 2) if msh is not None else None
    fields = [
        "MSH",
        "^~\\&",
        "CONSORTIUM",
        "GATEWAY",
        _er7(component(msh.msh_3, 1)) if msh is not None else "",
        _er7(component(msh.msh_4, 1)) if msh is not None else "",
        datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000"),
        "",
        f"ACK^{_er7(trigger)}^ACK" if trigger else "ACK^^ACK",
        uuid4().hex[:20],
        "P",
        "2.5",
        *[""] * 5,
        "UNICODE UTF-8",
    ]
    return "|".join(fields)


def _err(error: Hl7Error) -> str:
    kind = f"{error.code}^{_ERROR_NAMES.get(error.code, 'Error')}^HL70357"
    return f"ERR||{_location(error.location)}|{kind}|E||||{_er7(error.text[:250])}"


def build_ack(
    received: Any | None, code: AckCode, errors: list[Hl7Error], text_message: str = ""
) -> str:
    """The ACK for a message (or for an unparseable one, with what could be read) as ER7."""
    control = _er7(text(received.msh.msh_10)) if received is not None else ""
    msa = f"MSA|{code.value}|{control}"
    if text_message:
        msa += f"|{_er7(text_message[:80])}"
    return "\r".join([_header(received), msa, *map(_err, errors)])


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
        msh.msh_5 = component(received.msh.msh_3, 1) or ""
        msh.msh_6 = component(received.msh.msh_4, 1) or ""
    msh.msh_7 = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    trigger = component(received.msh.msh_9, 2) if received is not None else None
    msh.msh_9 = f"ACK^{trigger}^ACK" if trigger else "ACK^^ACK"
    msh.msh_10 = uuid4().hex[:20]
    msh.msh_11 = "P"
    msh.msh_12 = "2.5"
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
