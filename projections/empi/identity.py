"""What the index knows of one local patient record, and the features it compares."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from datetime import date
from enum import Enum
from functools import lru_cache
from typing import Any

from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.validation import ResidentIdentity, parse_resident_id, resident_id_check_char
from projections.empi import chinese

RecordKey = tuple[str, str]  # (institution code, local patient id)
_UNKNOWN_SEXES = frozenset({"UNKNOWN", "UNSPECIFIED"})
_DEMOGRAPHICS = (
    "medical_insurance_number",
    "name",
    "sex",
    "birth_date",
    "phone",
    "address",
    "township_division_code",
)


class IdHasher:
    """Keyed hashes (HMAC-SHA256) of resident id numbers: the index never keeps them in clear."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the resident id hash key must have at least 16 bytes")
        self._key = key
        # HMAC (RFC 2104) with its two keyed SHA-256 states made once and copied per value, as
        # `hmac.HMAC.copy` does: `hmac.digest` fetched the digest from OpenSSL on every call
        # (~3.5 µs a hash, two hashes a registration). Tests compare it with `hmac.digest`.
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def __call__(self, value: str) -> str:
        """The hex digest of HMAC-SHA256 of one normalised value."""
        inner = self._inner.copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@dataclass(frozen=True, slots=True)
class HashedId:
    """A resident id number as the index keeps it: keyed hashes and whether its check digit holds.

    A wrong check digit is flagged, not trusted: such an id never links deterministically
    (`full` is None), but its first 17 characters may still agree with another record's.
    """

    full: str | None
    first17: str
    valid: bool


def hash_resident_id(value: str | None, hasher: IdHasher) -> HashedId | None:
    """The keyed hashes of a resident id number; None when absent or unreadable.

    A first-generation 15-digit number is hashed as the 18-digit one that replaced it (GB
    11643-1999: "19" after the division code, then the check character), so a person's old and
    new cards agree.
    """
    if not value:
        return None
    text = chinese.fold(value).upper()
    if len(text) == 15 and text.isascii() and text.isdigit():
        first17 = f"{text[:6]}19{text[6:]}"
        return HashedId(hasher(first17 + resident_id_check_char(first17)), hasher(first17), True)
    if len(text) != 18 or not text[:17].isdigit():
        return None
    valid = resident_id_check_char(text[:17]) == text[17]
    return HashedId(hasher(text) if valid else None, hasher(text[:17]), valid)


@dataclass(frozen=True, slots=True)
class Demographics:
    """The identifying fields of one local record as the source last stated them (id hashed)."""

    name: str
    sex: str
    birth_date: date
    resident_id: HashedId | None = None
    medical_insurance_number: str | None = None
    phone: str | None = None
    address: str | None = None
    township_division_code: str | None = None

    @classmethod
    def of(cls, event: PatientRegistered, hasher: IdHasher) -> Demographics:
        """The demographics a registration states."""
        resident_id = hash_resident_id(event.resident_id_number, hasher)
        # Field by field, not over `_DEMOGRAPHICS`: only the sex is an enum.
        return cls(  # by position, in the order of the fields (keywords cost more)
            event.name,
            _plain(event.sex),
            event.birth_date,
            resident_id,
            _insurance_number(event.medical_insurance_number, resident_id, hasher),
            event.phone,
            event.address,
            event.township_division_code,
        )

    def updated(self, event: PatientDemographicsUpdated, hasher: IdHasher) -> Demographics:
        """These demographics with the update's non-null fields applied (null means unchanged)."""
        return self.changed(DemographicsChange.of(event, hasher), hasher)

    def changed(self, change: DemographicsChange, hasher: IdHasher) -> Demographics:
        """These demographics with a change's non-null fields applied (null means unchanged)."""
        changes = {f: getattr(change, f) for f in _CHANGED}
        updated = replace(self, **{f: v for f, v in changes.items() if v is not None})
        insurance = _insurance_number(updated.medical_insurance_number, updated.resident_id, hasher)
        if insurance != updated.medical_insurance_number:  # a resident id, or now the record's own
            return replace(updated, medical_insurance_number=insurance)
        return updated


@dataclass(frozen=True, slots=True)
class DemographicsChange:
    """What an update changes, as the index keeps it: no resident id in clear.

    The resident id is hashed (`HashedId`), an insurance number shaped as one is hashed as
    `Demographics` keeps it, and the card's birth date and sex fill in what the update leaves
    unstated. Applying the change (`Demographics.changed`) is applying the update: an update
    read before its registration is kept in this form (docs/empi.md, "No resident id in clear").
    """

    name: str | None = None
    sex: str | None = None
    birth_date: date | None = None
    resident_id: HashedId | None = None
    medical_insurance_number: str | None = None
    phone: str | None = None
    address: str | None = None
    township_division_code: str | None = None

    @classmethod
    def of(cls, event: PatientDemographicsUpdated, hasher: IdHasher) -> DemographicsChange:
        """The change an update states."""
        changes = {f: _plain(getattr(event, f)) for f in _DEMOGRAPHICS}
        if event.resident_id_number is not None:
            changes["resident_id"] = hash_resident_id(event.resident_id_number, hasher)
            # The card's birth date and sex win over what was stated before it (a clinic's
            # swapped day and month, an unknown sex): a registration must agree with its id, an
            # update is checked only against the fields it states itself.
            encoded = _encoded(event.resident_id_number)
            if encoded is not None:
                changes["birth_date"] = changes["birth_date"] or encoded.birth_date
                changes["sex"] = changes["sex"] or ("MALE" if encoded.male else "FEMALE")
        # Hashed now, dropped beside the record's own id when applied (`Demographics.changed`).
        changes["medical_insurance_number"] = _insurance_number(
            changes["medical_insurance_number"], None, hasher
        )
        return cls(**changes)


_CHANGED = tuple(f.name for f in fields(DemographicsChange))


# An insurance number that is a resident id, as `Demographics` keeps it: "id:" and the id's keyed
# hash (the hash `HashedId.full` holds for the same id).
_HASHED_INSURANCE = "id:"
_ID_SHAPED = re.compile(r"\d{17}[\dX]", re.ASCII)


def _insurance_number(
    value: str | None, resident_id: HashedId | None, hasher: IdHasher
) -> str | None:
    """An insurance number as the index keeps it: a resident id never in clear.

    Members often record the resident id as the insurance number (社会保障号码 = 公民身份号码):
    a number shaped as one (17 digits and a digit or X, check digit right or not) is kept as its
    keyed hash; beside the record's own resident id it is dropped (the same identifier again).
    """
    if not value:
        return value
    if value.startswith(_HASHED_INSURANCE):
        hashed = value
    else:
        text = chinese.fold(value).upper()
        if not _ID_SHAPED.fullmatch(text):  # 15 digits may be an insurance number of its own
            return value
        hashed = _HASHED_INSURANCE + hasher(text)
    own = resident_id.full if resident_id is not None else None
    return None if own is not None and hashed == _HASHED_INSURANCE + own else hashed


def _encoded(resident_id: str) -> ResidentIdentity | None:
    """The birth date and sex a resident id encodes; None when it encodes none."""
    try:
        return parse_resident_id(chinese.fold(resident_id).upper())
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """An enum member's value (`_value_`: `Enum.value` is a Python-level property), else itself."""
    return value._value_ if isinstance(value, Enum) else value


@dataclass(frozen=True, slots=True)
class Identity:
    """Folded, romanised and hashed features of one record; no resident id in clear.

    Slots, not a named tuple: the matcher reads ~25 of its fields per comparison, and Python
    3.11 specialises reading a slot, not a named tuple's field (3× slower there).
    """

    name: str
    surname: str
    given: str
    name_pinyin: tuple[str, ...]
    surname_pinyin: str
    given_pinyin: str
    fuzzy_pinyin: str
    sex: str | None
    birth_date: date
    id_hash: str | None
    id17_hash: str | None
    id_check_valid: bool
    insurance: str | None
    phone: str | None
    address: str | None
    township: str | None
    address_core: str | None  # without division suffixes, numbers in digits


def identity_of(demographics: Demographics) -> Identity:
    """The features the matcher compares, computed once per record version."""
    name, surname, given, full, surname_reading, given_pinyin, fuzzy = _name_features(
        demographics.name
    )
    hashed = demographics.resident_id
    stated = demographics.medical_insurance_number or ""
    insurance = (stated if stated.startswith(_HASHED_INSURANCE) else chinese.digits(stated)) or None
    phone = _phone(demographics.phone)
    address = chinese.fold(demographics.address) if demographics.address else None
    # By position, in the order of the fields: keywords made the call ~2× dearer (~5 µs).
    return Identity(
        name,
        surname,
        given,
        full,  # name_pinyin
        surname_reading,  # surname_pinyin
        given_pinyin,
        fuzzy,  # fuzzy_pinyin
        None if demographics.sex in _UNKNOWN_SEXES else demographics.sex,
        demographics.birth_date,
        hashed.full if hashed else None,  # id_hash
        hashed.first17 if hashed else None,  # id17_hash
        hashed.valid if hashed else False,  # id_check_valid
        insurance,
        phone,
        address or None,
        demographics.township_division_code,  # township
        chinese.address_core(address) if address else None,  # address_core
    )


@lru_cache(maxsize=65536)
def _name_features(
    stated: str,
) -> tuple[str, str, str, tuple[str, ...], str, str, str]:
    """Folded name, surname, given name, pinyin, surname reading, given pinyin, dialect pinyin.

    Per name, not per record: a county's names repeat (王秀英), and the folding and romanising
    were a tenth of a registration's time.
    """
    name = chinese.fold(stated)
    surname, given = chinese.split_name(name)
    given_syllables = chinese.syllables(given)
    surname_reading = chinese.surname_pinyin(surname)
    full = (*chinese.surname_syllables(surname), *given_syllables)
    fuzzy = " ".join(chinese.fuzzy(s) for s in full)
    return name, surname, given, full, surname_reading, "".join(given_syllables), fuzzy


# What follows a phone's last 7 or 8 digits to name an extension: 转 123, 分机 12, ext. 12, x12,
# #12, or -8021 after a full landline.
_EXTENSION = re.compile(r"^(.*?\d{7,8})\s*(?:转|分机|ext\.?|x|#|-)\s*\d{1,6}\s*$")


def _phone(value: str | None) -> str | None:
    """A phone in one form: a mobile's 11 digits, a landline's trunk 0, area code and number.

    The country code (+86, 0086, 86) goes, and a landline written after it without its trunk 0
    (+86 571 8888 1234) gets it back; a mobile dialled with the long-distance 0 (0138…) loses it;
    an extension goes.
    """
    if not value:
        return None
    if len(value) == 11 and value[0] == "1" and value.isascii() and value.isdigit():
        return value  # a mobile as it should be written: the common case
    text = unicodedata.normalize("NFKC", value).lower()
    extended = _EXTENSION.match(text)
    number = chinese.digits(extended.group(1) if extended else text)
    if number.startswith("0086"):
        number = _national(number[4:])
    elif number.startswith("86") and len(number) >= 11:  # a national number is 10+ digits
        number = _national(number[2:])
    if len(number) == 12 and number.startswith("01") and number[2] in "3456789":
        number = number[1:]  # 010 is Beijing's only 01x area code: 01[3-9]… is 0 + a mobile
    return number or None


def _national(number: str) -> str:
    """A number after its country code: a mobile as it is, a landline with its trunk 0."""
    if not number or number[0] == "0" or (len(number) == 11 and number[0] == "1"):
        return number
    return "0" + number  # Beijing's 10 too: +86 10 8888 1234 is 010 8888 1234
