"""Reading values out of parsed messages: text without escapes, timestamps, codes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from gateway.hl7.er7 import Value, unescape

__all__ = [
    "BEIJING",
    "CODE_SYSTEMS",
    "Hl7ValueError",
    "coded",
    "component",
    "day",
    "text",
    "timestamp",
    "unescape",
]

# China keeps one time zone: a timestamp without an offset is Beijing time.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$", re.ASCII
)

# HL7 table 0396 names next to the systems our contracts use.
CODE_SYSTEMS = {
    "I10": "ICD-10",
    "ICD10": "ICD-10",
    "ICD-10": "ICD-10",
    "LN": "LOINC",
    "LOINC": "LOINC",
    "DCM": "DICOM",
    "DICOM": "DICOM",
    "I9C": "ICD-9-CM-3",
    "ICD-9-CM-3": "ICD-9-CM-3",
    "NHSA": "NHSA",
    "L": "LOCAL",
    "99LOCAL": "LOCAL",
    "LOCAL": "LOCAL",
}


class Hl7ValueError(ValueError):
    """A value of the message cannot be read; names the field in HL7 terms (e.g. PID-7)."""

    def __init__(self, where: str, detail: str, code: str = "101") -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.code = code  # HL7 table 0357: 101 required field missing, 103 table value not found


def text(element: Any) -> str | None:
    """The element's unescaped text, or None when empty or absent."""
    if isinstance(element, Value):
        return element.text()
    if element is None:
        return None
    # An hl7apy element (the reference parser in the tests).
    try:
        raw = element.to_er7()
    except Exception:
        return None
    raw = raw.strip() if isinstance(raw, str) else ""
    return unescape(raw) if raw else None


def timestamp(value: str | None, where: str) -> datetime | None:
    """An HL7 DTM/TS (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]) as an aware datetime (UTC)."""
    if not value:
        return None
    value = value.split("^", 1)[0]
    match = _DTM.fullmatch(value)
    if match is None:
        raise Hl7ValueError(where, f"{value!r} is not an HL7 timestamp (YYYYMMDDHHMMSS+ZZZZ)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        tz = BEIJING
        if offset:
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 east of UTC, 9999 west
        raise Hl7ValueError(where, f"{value!r} is not a valid date and time ({exc})") from None


def day(value: str | None, where: str, needed: str | None = None) -> date | None:
    """An HL7 date (the calendar date as written, without time-zone conversion).

    A DTM of year or month precision (`1950`, `195003`: valid HL7) gives no day: None, or,
    when `needed` says what needs the day, the error naming it (no day is invented)."""
    if not value:
        return None
    value = value.split("^", 1)[0]
    if re.fullmatch(r"\d{4}(\d{2})?", value, re.ASCII):
        if len(value) == 6 and not 1 <= int(value[4:]) <= 12:
            raise Hl7ValueError(where, f"{value!r} is not a valid date")
        if needed is None:
            return None
        raise Hl7ValueError(where, f"{value!r} gives only the year or month: {needed} the day")
    if not re.fullmatch(r"\d{8}(\d{0,6})?(\.\d+)?([+-]\d{4})?", value, re.ASCII):
        raise Hl7ValueError(where, f"{value!r} is not an HL7 date (YYYYMMDD)")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        raise Hl7ValueError(where, f"{value!r} is not a valid date") from None


def component(element: Any, position: int) -> str | None:
    """The unescaped text of one component (1-based) of a field or repetition."""
    if isinstance(element, Value):
        return element.component(position)
    if element is None:
        return None
    # An hl7apy element: its numbered children, or for a simple type its text split at ^.
    children = getattr(element, "children", None) or ()
    numbered = [c for c in children if str(c.name).rsplit("_", 1)[-1].isdigit()]
    for child in numbered:
        if str(child.name).rsplit("_", 1)[-1] == str(position):
            return text(child)
    if numbered:
        return None
    try:
        raw = str(element.to_er7())
    except Exception:
        return None
    parts = raw.split("^")
    found = parts[position - 1].strip() if position <= len(parts) else ""
    return unescape(found) if found else None


def coded(element: Any, where: str, default_system: str = "LOCAL") -> dict[str, str] | None:
    """A CE/CWE as {system, code, display}; the display falls back to the code."""
    if element is None or text(element) is None:
        return None
    code = component(element, 1)
    if not code:
        raise Hl7ValueError(where, "the coded value has no code (component 1)")
    display = component(element, 2) or code
    raw_system = component(element, 3) or default_system
    system = CODE_SYSTEMS.get(raw_system.upper(), raw_system)
    return {"system": system, "code": code, "display": display}
