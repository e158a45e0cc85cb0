"""Pairwise comparison of two records: deterministic identifiers, then Fellegi–Sunter weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import ne
from types import MappingProxyType
from typing import NamedTuple

from events.person import AgreementLevel, FieldAgreement, MatchField, MatchMethod
from projections.empi.identity import Identity

A, P, D, M = (
    AgreementLevel.AGREE,
    AgreementLevel.PARTIAL,
    AgreementLevel.DISAGREE,
    AgreementLevel.MISSING,
)

# Each comparison outcome ("cell") is one row here: its field, its level and its detail.
CELLS: Mapping[str, tuple[MatchField, AgreementLevel, str | None]] = MappingProxyType(
    {
        "id.agree": (MatchField.RESIDENT_ID, A, None),
        "id.first17": (MatchField.RESIDENT_ID, P, "check_digit_invalid"),
        "id.disagree": (MatchField.RESIDENT_ID, D, None),
        "id.missing": (MatchField.RESIDENT_ID, M, None),
        "insurance.agree": (MatchField.INSURANCE_NUMBER, A, None),
        "insurance.disagree": (MatchField.INSURANCE_NUMBER, D, None),
        "insurance.missing": (MatchField.INSURANCE_NUMBER, M, None),
        "name.exact": (MatchField.NAME, A, None),
        "name.pinyin": (MatchField.NAME, P, "pinyin"),
        "name.transposed": (MatchField.NAME, P, "transposed"),
        "name.one_character": (MatchField.NAME, P, "one_character"),
        "name.fuzzy_pinyin": (MatchField.NAME, P, "fuzzy_pinyin"),
        "name.surname_only": (MatchField.NAME, D, "surname_only"),
        "name.disagree": (MatchField.NAME, D, None),
        "birth.exact": (MatchField.BIRTH_DATE, A, None),
        "birth.implied": (MatchField.BIRTH_DATE, A, "implied_by_resident_id"),
        "birth.swapped": (MatchField.BIRTH_DATE, P, "day_month_swapped"),
        "birth.january_first": (MatchField.BIRTH_DATE, P, "january_first"),
        "birth.year_month": (MatchField.BIRTH_DATE, P, "year_month"),
        "birth.disagree": (MatchField.BIRTH_DATE, D, None),
        "sex.agree": (MatchField.SEX, A, None),
        "sex.implied": (MatchField.SEX, A, "implied_by_resident_id"),
        "sex.disagree": (MatchField.SEX, D, None),
        "sex.missing": (MatchField.SEX, M, None),
        "phone.agree": (MatchField.PHONE, A, None),
        "phone.disagree": (MatchField.PHONE, D, None),
        "phone.missing": (MatchField.PHONE, M, None),
        "address.exact": (MatchField.ADDRESS, A, None),
        "address.contains": (MatchField.ADDRESS, P, "village"),
        "address.township": (MatchField.ADDRESS, P, "township"),
        "address.disagree": (MatchField.ADDRESS, D, None),
        "address.missing": (MatchField.ADDRESS, M, None),
    }
)

# log2(m/u) per cell, estimated by `consortium empi train --seed 1 --identities 50000` on a
# labelled training county (monotone, capped; see docs/empi.md); absent cells weigh 0.
WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "id.agree": 9.7,
        "id.first17": 8.0,
        "id.disagree": -5.6,
        "insurance.agree": 20.0,
        "insurance.disagree": -15.8,
        "name.exact": 5.9,
        "name.pinyin": 3.7,
        "name.transposed": 7.8,
        "name.surname_only": -9.5,
        "name.disagree": -7.2,
        "birth.exact": 6.0,
        "birth.swapped": 3.4,
        "birth.disagree": -5.8,
        "sex.disagree": -5.3,
        "phone.agree": 4.3,
        "phone.disagree": -4.2,
        "address.exact": 4.5,
        "address.contains": 4.1,
        "address.disagree": -8.0,
    }
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at and above `link` link; at and above `review` go to review; below stay apart."""

    link: float = 10.0
    review: float = 4.0


class Comparison(NamedTuple):
    """The outcome of comparing two records.

    A named tuple, not a frozen dataclass: the index builds one per candidate (the hottest loop),
    and a frozen dataclass sets each field through `object.__setattr__`.
    """

    score: float
    cells: tuple[str, ...]
    deterministic: MatchMethod | None
    conflict: bool

    def agreement(self, weights: Mapping[str, float] = WEIGHTS) -> tuple[FieldAgreement, ...]:
        """The agreement vector as the decision events carry it."""
        if weights is WEIGHTS:  # one vector per cell vector (see `_COMPARISONS`)
            found = _VECTORS.get(self.cells)
            if found is None:
                found = _VECTORS[self.cells] = _agreement(self.cells, weights)
            return found
        return _agreement(self.cells, weights)


def _agreement(cells: tuple[str, ...], weights: Mapping[str, float]) -> tuple[FieldAgreement, ...]:
    return tuple(_field_agreement(cell, weights.get(cell, 0.0)) for cell in cells)


_AGREEMENTS: dict[tuple[str, str], FieldAgreement] = {}
_VECTORS: dict[tuple[str, ...], tuple[FieldAgreement, ...]] = {}  # under the default WEIGHTS


def _field_agreement(cell: str, weight: float) -> FieldAgreement:
    """One cell's agreement: the models are frozen, so one per cell and weight serves them all.

    Keyed by the weight's exact value (`float.hex`: 0.0 and -0.0 are equal but encode apart).
    """
    key = (cell, float(weight).hex())
    found = _AGREEMENTS.get(key)
    if found is None:
        if len(_AGREEMENTS) > 4096:  # weights being trained: many mappings, each seen briefly
            _AGREEMENTS.clear()
        field, level, detail = CELLS[cell]
        found = _AGREEMENTS[key] = FieldAgreement(
            field=field, level=level, detail=detail, weight=weight
        )
    return found


_NAME_DISAGREES = frozenset({"name.disagree", "name.surname_only"})
# The comparison (score, method, conflict) of each cell vector under the default WEIGHTS, made
# once and shared (a named tuple: immutable): a county's comparisons fall into a few hundred
# vectors. WEIGHTS is a read-only proxy of a dict nothing else holds, so they cannot go stale;
# other weights (training) are summed every time.
_COMPARISONS: dict[tuple[str, ...], Comparison] = {}


def compare(  # noqa: PLR0912 - one body: a call per field cost more than the comparing
    a: Identity, b: Identity, weights: Mapping[str, float] = WEIGHTS
) -> Comparison:
    """Compare two records field by field; identifiers decide unless the name contradicts them.

    The hottest loop of the index (every candidate of every registration): the fields are
    compared inline, commonest outcomes first, rather than through a function per field.
    """
    # resident id: both check digits valid and equal, the first 17 characters, or apart
    if a.id17_hash is None or b.id17_hash is None:
        id_cell = "id.missing"
    elif a.id_hash is not None and a.id_hash == b.id_hash:
        id_cell = "id.agree"
    elif a.id17_hash == b.id17_hash:
        id_cell = "id.first17"
    else:
        id_cell = "id.disagree"
    if a.insurance is None or b.insurance is None:
        insurance_cell = "insurance.missing"
    elif a.insurance == b.insurance:
        insurance_cell = "insurance.agree"
    else:
        insurance_cell = "insurance.disagree"
    if id_cell == "id.agree":  # the contracts make birth date and sex agree with the id
        birth_cell, sex_cell = "birth.implied", "sex.implied"
    else:
        birth_cell = _birth(a, b)
        if a.sex is None or b.sex is None:
            sex_cell = "sex.missing"
        else:
            sex_cell = "sex.agree" if a.sex == b.sex else "sex.disagree"
    if a.phone is None or b.phone is None:
        phone_cell = "phone.missing"
    else:
        x, y = a.phone, b.phone
        phone_cell = "phone.agree" if x == y or _local(x, y) or _local(y, x) else "phone.disagree"
    cells = (
        id_cell,
        insurance_cell,
        _name(a, b),
        birth_cell,
        sex_cell,
        phone_cell,
        _address(a, b),
    )
    if weights is WEIGHTS:
        found = _COMPARISONS.get(cells)
        if found is None:
            found = _COMPARISONS[cells] = _compared(cells, weights)
        return found
    return _compared(cells, weights)


def _compared(cells: tuple[str, ...], weights: Mapping[str, float]) -> Comparison:
    """The score, deterministic method and conflict of one cell vector."""
    weight = weights.get
    score = (
        weight(cells[0], 0.0)
        + weight(cells[1], 0.0)
        + weight(cells[2], 0.0)
        + weight(cells[3], 0.0)
        + weight(cells[4], 0.0)
        + weight(cells[5], 0.0)
        + weight(cells[6], 0.0)
    )
    id_cell, insurance_cell, name_cell = cells[0], cells[1], cells[2]
    implied = id_cell == "id.agree"
    insurance_agrees = insurance_cell == "insurance.agree"
    # An identifier that agrees while the name or the other identifier disagrees is a
    # relative's card or a typo: never linked automatically, always shown to an administrator.
    # Siblings share all but one character of their names (字辈), so one character is too few.
    # A resident id disagreeing with an agreeing insurance number and name is the other way
    # round: a relative's id card lent at registration (the insurance card is the patient's own).
    conflict = (implied or insurance_agrees) and (
        name_cell in _NAME_DISAGREES
        or (implied and name_cell == "name.one_character" and not insurance_agrees)
        or (implied and insurance_cell == "insurance.disagree")
    )
    deterministic = None
    if not conflict:
        if implied:
            deterministic = MatchMethod.RESIDENT_ID
        elif insurance_agrees:
            deterministic = MatchMethod.INSURANCE_NUMBER
    return Comparison(score, cells, deterministic, conflict)


def _name(a: Identity, b: Identity) -> str:  # noqa: PLR0911 - one return per level
    """The closest way two folded names agree, from exact down to disagree."""
    x, y = a.name, b.name
    if x == y:
        return "name.exact"
    if a.name_pinyin == b.name_pinyin:
        return "name.pinyin"
    given = a.given
    if a.surname == b.surname and len(given) == 2 and given == b.given[::-1]:
        return "name.transposed"
    if len(x) == len(y) and _one_character_apart(x, y):
        return "name.one_character"
    if a.fuzzy_pinyin == b.fuzzy_pinyin:
        return "name.fuzzy_pinyin"
    if a.surname_pinyin == b.surname_pinyin:
        return "name.surname_only"
    return "name.disagree"


def _one_character_apart(x: str, y: str) -> bool:
    """One character differs (names of one length), and for a two-character name it is not the
    whole given name."""
    length = len(x)
    if length == 3:  # the commonest: one character of three (no iterator to allocate)
        return (x[0] != y[0]) + (x[1] != y[1]) + (x[2] != y[2]) == 1
    if length == 2:  # only the surname may differ
        return x[0] != y[0] and x[1] == y[1]
    differing: int = sum(map(ne, x, y))
    return differing == 1  # one character (of one, or of four and more) differs


def _local(short: str, full: str) -> bool:
    """A landline written without its area code (88881234) and with it (0571 88881234): within
    a county's members the area code is one."""
    return (
        len(short) in (7, 8)
        and full[0] == "0"
        and len(full) - len(short) in (3, 4)  # 0 and an area code of 2 or 3 digits
        and full.endswith(short)
    )


def _birth(a: Identity, b: Identity) -> str:
    x, y = a.birth_date, b.birth_date
    if x == y:
        return "birth.exact"
    if x.year != y.year:
        return "birth.disagree"
    if x.month == y.day and x.day == y.month:
        return "birth.swapped"
    if (x.month == 1 and x.day == 1) or (y.month == 1 and y.day == 1):
        return "birth.january_first"
    return "birth.year_month" if x.month == y.month else "birth.disagree"


def _address(a: Identity, b: Identity) -> str:  # noqa: PLR0911 - one return per level
    if a.address is None or b.address is None:
        return "address.missing"
    if a.address == b.address:
        return "address.exact"
    if a.address in b.address or b.address in a.address:
        return "address.contains"
    # Written with and without division suffixes (浙江省杭州市 / 浙江杭州), numbers in Chinese
    # numerals or digits: a second look, so nothing that agreed above stops agreeing.
    x, y = a.address_core, b.address_core
    if x is not None and y is not None:
        if x == y:
            return "address.exact"
        if x in y or y in x:
            return "address.contains"
    if a.township is not None and a.township == b.township:
        return "address.township"
    return "address.disagree"


def blocking_keys(identity: Identity) -> tuple[str, ...]:
    """Keys under which candidates are looked up, so matching is not quadratic."""
    year = identity.birth_date.year
    keys = [f"s:{identity.surname_pinyin}:{year}", f"g:{identity.given_pinyin}:{year}"]
    # The name across birth years, within one township: without a township the block spans
    # the county, and a common name (王秀英) filled it with a thousand namesakes per record.
    if identity.township is not None:
        keys.append(f"n:{identity.fuzzy_pinyin}:{identity.township}")
    if identity.id17_hash is not None:
        keys.append(f"i:{identity.id17_hash}")
    if identity.insurance is not None:
        keys.append(f"m:{identity.insurance}")
    if identity.phone is not None:
        keys.append(f"p:{identity.phone}")
    return tuple(keys)
