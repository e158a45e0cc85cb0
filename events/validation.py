"""Rules beyond the Avro schema that the event models enforce (identity numbers, clocks, members).

Rules that depend on today's clock or today's membership are skipped when an event is decoded
from the log (context ``{"replay": True}``): a fact accepted yesterday stays readable even after
its institution leaves the consortium.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import mul
from typing import Any, TypedDict

from pydantic import ValidationInfo

from consortium.settings import get_settings
from events.membership import InstitutionLevel, Membership, load_membership

# ASCII only: \d would also match full-width and other Unicode digits.
# ISO 7064 MOD 11-2 as GB 11643-1999 applies it: weight of position i is 2**(17-i) mod 11.
_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS = "10X98765432"
_ZEROS = ord("0") * sum(_WEIGHTS)  # what the ASCII codes of the digits add over their values
_RESIDENT_ID = re.compile(r"^\d{17}[\dX]$", re.ASCII)
_ICD10 = re.compile(r"^[A-Z]\d{2}(\.[0-9x]{1,4}(x\d{3})?)?$", re.ASCII)
_DICOM_UID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$", re.ASCII)
_DICOM_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$", re.ASCII)
_ETHNICITY = re.compile(r"^(0[1-9]|[1-4]\d|5[0-6]|97|98)$", re.ASCII)
_TOWNSHIP = re.compile(r"^\d{9}$", re.ASCII)


class Checks(TypedDict, total=False):
    """Validation context: pass as ``model_validate(data, context=...)``."""

    membership: Membership
    now: datetime
    # now + the clock-skew allowance, for a caller that checks many times at one `now`
    not_after: datetime
    replay: bool


@dataclass(frozen=True)
class ResidentIdentity:
    """What an 18-digit resident identity number encodes."""

    division_code: str
    birth_date: date
    male: bool


def resident_id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits.

    From their bytes when ASCII (`int` per digit in a generator cost ~3 µs, a fifth of what the
    patient index spends hashing a registration's id); other Unicode decimal digits, which
    `int` reads, the long way."""
    if first17.isascii() and len(first17) == len(_WEIGHTS):
        return _CHECK_CHARS[(sum(map(mul, first17.encode(), _WEIGHTS)) - _ZEROS) % 11]
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def parse_resident_id(value: str) -> ResidentIdentity:
    """Check an 18-character resident identity number and decode it, or raise ValueError."""
    if not _RESIDENT_ID.fullmatch(value):
        raise ValueError("resident id number must be 17 digits followed by a digit or X")
    expected = resident_id_check_char(value[:17])
    if value[17] != expected:
        raise ValueError(
            f"resident id number check digit is {value[17]!r} but GB 11643-1999 gives {expected!r}"
        )
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise ValueError(
            f"resident id number encodes no valid birth date ({value[6:14]})"
        ) from None
    return ResidentIdentity(division_code=value[:6], birth_date=born, male=int(value[16]) % 2 == 1)


# Full-width digits and X, as a clerk's input method in full-width mode types them.
_HALF_WIDTH = {**{0xFF10 + n: ord("0") + n for n in range(10)}, 0xFF38: ord("X"), 0xFF58: ord("x")}


def normalize_resident_id(value: str) -> str:
    """The number in its one stored form, checked: full-width digits and X folded, a trailing x
    upper-cased, and a first-generation 15-digit number given as the 18-digit one that replaced
    it (GB 11643-1999: "19" after the division code, then the check character)."""
    value = value.strip().translate(_HALF_WIDTH).upper()
    if len(value) == 15 and value.isascii() and value.isdigit():
        first17 = f"{value[:6]}19{value[6:]}"
        value = first17 + resident_id_check_char(first17)
    parse_resident_id(value)
    return value


def check_sex_against_id(sex: str, resident_id: str | None) -> None:
    """Refuse MALE/FEMALE that contradicts the 17th digit of the resident id number."""
    if resident_id is None or sex not in ("MALE", "FEMALE"):
        return
    encoded = "MALE" if parse_resident_id(resident_id).male else "FEMALE"
    if sex != encoded:
        raise ValueError(f"sex {sex} contradicts the resident id number, which encodes {encoded}")


def check_birth_date_against_id(born: date, resident_id: str | None) -> None:
    """Refuse a birth date that differs from the one in the resident id number."""
    if resident_id is None:
        return
    encoded = parse_resident_id(resident_id).birth_date
    if born != encoded:
        raise ValueError(
            f"birth date {born.isoformat()} contradicts the resident id number,"
            f" which encodes {encoded.isoformat()}"
        )


def check_born_before(born: date, occurred_at: datetime) -> None:
    """Refuse a birth date after the event (a day's grace: Beijing time runs 8 h ahead of UTC)."""
    if born > occurred_at.date() + timedelta(days=1):
        raise ValueError(f"birth date {born.isoformat()} lies after the event occurred")


def to_utc_millis(value: datetime) -> datetime:
    """Require a timezone-aware datetime; return it in UTC, cut to Avro's milliseconds."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (e.g. 2024-05-01T08:00:00Z), not naive")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:59-01:00: no UTC time holds it
        raise ValueError(
            f"datetime {value.isoformat()} lies outside the years 1-9999 in UTC"
        ) from None
    if value.microsecond % 1000:  # most inputs have milliseconds or less: no second copy
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _context(info: ValidationInfo) -> Checks:
    context: Any = info.context
    return context if isinstance(context, dict) else {}  # type: ignore[return-value]


def check_not_future(value: datetime, info: ValidationInfo) -> datetime:
    """Refuse a time later than now plus the allowed clock skew (skipped on replay)."""
    context = _context(info)
    if context.get("replay"):
        return value
    limit = context.get("not_after")
    if limit is not None and value <= limit:
        return value
    now = context.get("now")
    now = datetime.now(UTC) if now is None else now
    skew = get_settings().clock_skew_seconds
    if value > now + timedelta(seconds=skew):
        raise ValueError(
            f"{value.isoformat()} lies in the future beyond the {skew} s clock-skew allowance"
            f" (now {now.isoformat()})"
        )
    return value


def membership_for(info: ValidationInfo) -> Membership | None:
    """The membership to check institution codes against; None on replay."""
    context = _context(info)
    if context.get("replay"):
        return None
    membership = context.get("membership")
    return load_membership() if membership is None else membership


def check_member(code: str, info: ValidationInfo) -> str:
    """Refuse an institution code that is not a member of the consortium (skipped on replay)."""
    membership = membership_for(info)
    if membership is not None and code not in membership:
        raise ValueError(f"unknown institution code {code!r}: not a member of the consortium")
    return code


def check_referral_direction(
    direction: str, from_code: str, to_code: str, info: ValidationInfo
) -> None:
    """Refuse a direction contradicting the two institutions' levels, or UNKNOWN where the
    levels give it (skipped on replay): the desks filter by it."""
    membership = membership_for(info)
    if membership is None or from_code not in membership or to_code not in membership:
        return
    source, target = membership.level(from_code), membership.level(to_code)
    actual = _direction(source, target)
    if direction != actual:
        raise ValueError(
            f"direction {direction} contradicts the levels: {from_code} is a {source.value},"
            f" {to_code} is a {target.value} (that is {actual})"
        )


def _direction(source: InstitutionLevel, target: InstitutionLevel) -> str:
    if target.tier > source.tier:
        return "UP"
    return "DOWN" if target.tier < source.tier else "LATERAL"


def check_icd10(system: str, code: str) -> None:
    """Refuse a diagnosis that is not an ICD-10 code (国家临床版 codes such as I21.900x001 pass)."""
    if system != "ICD-10":
        raise ValueError(f"diagnosis must be coded in system ICD-10, not {system!r}")
    if not _ICD10.fullmatch(code):
        raise ValueError(
            f"{code!r} is not an ICD-10 code (expected e.g. I10.x00, I21.900 or J18.900x001)"
        )


def check_dicom_uid(value: str) -> str:
    """Refuse a malformed DICOM UID (dotted decimal, no leading zeros, at most 64 characters)."""
    if len(value) > 64 or not _DICOM_UID.fullmatch(value):
        raise ValueError(f"{value!r} is not a DICOM UID (dotted numbers, at most 64 characters)")
    return value


def check_dicom_modality(value: str) -> str:
    """Refuse a malformed DICOM modality code (upper-case, at most 16 characters)."""
    if not _DICOM_MODALITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a DICOM modality code (e.g. CT, MR, DX, US)")
    return value


def check_ethnicity(value: str) -> str:
    """Refuse a code outside GB/T 3304 (01–56, 97, 98)."""
    if not _ETHNICITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a GB/T 3304 ethnic group code (01–56, 97, 98)")
    return value


def check_township_division(value: str) -> str:
    """Refuse a township-level division code that is not 9 digits."""
    if not _TOWNSHIP.fullmatch(value):
        raise ValueError(f"{value!r} is not a 9-digit township-level division code")
    return value
