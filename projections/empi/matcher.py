"""Pairwise comparison of two records: deterministic identifiers, then Fellegi–Sunter weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

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

# log2(m/u) per cell, m and u estimated on a labelled training county (seed 1, see
# docs/empi.md); cells absent here weigh 0 (missing values, implied agreements).
WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "id.agree": 12.0,
        "id.first17": 8.0,
        "id.disagree": -12.0,
        "insurance.agree": 12.0,
        "insurance.disagree": -10.0,
        "name.exact": 9.0,
        "name.pinyin": 7.0,
        "name.transposed": 6.0,
        "name.one_character": 4.0,
        "name.fuzzy_pinyin": 4.0,
        "name.surname_only": -3.0,
        "name.disagree": -9.0,
        "birth.exact": 8.0,
        "birth.swapped": 5.0,
        "birth.january_first": 3.0,
        "birth.year_month": 3.0,
        "birth.disagree": -6.0,
        "sex.agree": 1.0,
        "sex.disagree": -6.0,
        "phone.agree": 5.0,
        "phone.disagree": -1.0,
        "address.exact": 4.0,
        "address.contains": 3.0,
        "address.township": 1.0,
        "address.disagree": -2.0,
    }
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at and above `link` link; at and above `review` go to review; below stay apart."""

    link: float = 20.0
    review: float = 12.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of comparing two records."""

    score: float
    cells: tuple[str, ...]
    deterministic: MatchMethod | None
    conflict: bool

    def agreement(self, weights: Mapping[str, float] = WEIGHTS) -> tuple[FieldAgreement, ...]:
        """The agreement vector as the decision events carry it."""
        return tuple(
            FieldAgreement(
                field=CELLS[cell][0],
                level=CELLS[cell][1],
                detail=CELLS[cell][2],
                weight=weights.get(cell, 0.0),
            )
            for cell in self.cells
        )


_NAME_DISAGREES = frozenset({"name.disagree", "name.surname_only"})


def compare(a: Identity, b: Identity, weights: Mapping[str, float] = WEIGHTS) -> Comparison:
    """Compare two records field by field; identifiers decide unless the name contradicts them."""
    id_cell = _resident_id(a, b)
    implied = id_cell == "id.agree"  # the contracts make birth date and sex agree with the id
    cells = (
        id_cell,
        _insurance(a, b),
        _name(a, b),
        "birth.implied" if implied else _birth(a, b),
        "sex.implied" if implied else _sex(a, b),
        _phone(a, b),
        _address(a, b),
    )
    score = sum(weights.get(cell, 0.0) for cell in cells)
    name_disagrees = cells[2] in _NAME_DISAGREES
    deterministic = None
    if not name_disagrees:
        if id_cell == "id.agree":
            deterministic = MatchMethod.RESIDENT_ID
        elif cells[1] == "insurance.agree":
            deterministic = MatchMethod.INSURANCE_NUMBER
    conflict = name_disagrees and (implied or cells[1] == "insurance.agree")
    return Comparison(score, cells, deterministic, conflict)


def _resident_id(a: Identity, b: Identity) -> str:
    if a.id17_hash is None or b.id17_hash is None:
        return "id.missing"
    if a.id_hash is not None and a.id_hash == b.id_hash:
        return "id.agree"
    if a.id17_hash == b.id17_hash:
        return "id.first17"
    return "id.disagree"


def _insurance(a: Identity, b: Identity) -> str:
    if a.insurance is None or b.insurance is None:
        return "insurance.missing"
    return "insurance.agree" if a.insurance == b.insurance else "insurance.disagree"


def _name(a: Identity, b: Identity) -> str:
    if a.name == b.name:
        return "name.exact"
    if a.name_pinyin == b.name_pinyin:
        return "name.pinyin"
    if a.surname == b.surname and len(a.given) == 2 and a.given == b.given[::-1]:
        return "name.transposed"
    if len(a.name) == len(b.name) and sum(x != y for x, y in zip(a.name, b.name)) == 1:
        return "name.one_character"
    if a.fuzzy_pinyin == b.fuzzy_pinyin:
        return "name.fuzzy_pinyin"
    if a.surname_pinyin == b.surname_pinyin:
        return "name.surname_only"
    return "name.disagree"


def _birth(a: Identity, b: Identity) -> str:
    x, y = a.birth_date, b.birth_date
    if x == y:
        return "birth.exact"
    if x.year != y.year:
        return "birth.disagree"
    if x.month == y.day and x.day == y.month:
        return "birth.swapped"
    if (x.month, x.day) == (1, 1) or (y.month, y.day) == (1, 1):
        return "birth.january_first"
    return "birth.year_month" if x.month == y.month else "birth.disagree"


def _sex(a: Identity, b: Identity) -> str:
    if a.sex is None or b.sex is None:
        return "sex.missing"
    return "sex.agree" if a.sex == b.sex else "sex.disagree"


def _phone(a: Identity, b: Identity) -> str:
    if a.phone is None or b.phone is None:
        return "phone.missing"
    return "phone.agree" if a.phone == b.phone else "phone.disagree"


def _address(a: Identity, b: Identity) -> str:
    if a.address is None or b.address is None:
        return "address.missing"
    if a.address == b.address:
        return "address.exact"
    if a.address in b.address or b.address in a.address:
        return "address.contains"
    if a.township is not None and a.township == b.township:
        return "address.township"
    return "address.disagree"


def blocking_keys(identity: Identity) -> tuple[str, ...]:
    """Keys under which candidates are looked up, so matching is not quadratic."""
    year = identity.birth_date.year
    keys = [
        f"s:{identity.surname_pinyin}:{year}",
        f"g:{identity.given_pinyin}:{year}",
        f"n:{identity.fuzzy_pinyin}:{identity.township or ''}",
    ]
    if identity.id17_hash is not None:
        keys.append(f"i:{identity.id17_hash}")
    if identity.insurance is not None:
        keys.append(f"m:{identity.insurance}")
    if identity.phone is not None:
        keys.append(f"p:{identity.phone}")
    return tuple(keys)
