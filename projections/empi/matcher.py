"""Pairwise comparison of two records: deterministic identifiers, then Fellegi–Sunter weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    weight = weights.get  # the hottest loop of the index: ~100 comparisons per registration
    score = (
        weight(cells[0], 0.0)
        + weight(cells[1], 0.0)
        + weight(cells[2], 0.0)
        + weight(cells[3], 0.0)
        + weight(cells[4], 0.0)
        + weight(cells[5], 0.0)
        + weight(cells[6], 0.0)
    )
    id_agrees, insurance_agrees = implied, cells[1] == "insurance.agree"
    # An identifier that agrees while the name or the other identifier disagrees is a
    # relative's card or a typo: never linked automatically, always shown to an administrator.
    # Siblings share all but one character of their names (字辈), so one character is too few.
    # A resident id disagreeing with an agreeing insurance number and name is the other way
    # round: a relative's id card lent at registration (the insurance card is the patient's own).
    conflict = (id_agrees or insurance_agrees) and (
        cells[2] in _NAME_DISAGREES
        or (id_agrees and cells[2] == "name.one_character" and not insurance_agrees)
        or (id_agrees and cells[1] == "insurance.disagree")
    )
    deterministic = None
    if not conflict:
        if id_agrees:
            deterministic = MatchMethod.RESIDENT_ID
        elif insurance_agrees:
            deterministic = MatchMethod.INSURANCE_NUMBER
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
    """The closest way two folded names agree, from exact down to disagree."""
    if a.name == b.name:  # the commonest cases first, without the table's calls
        return "name.exact"
    if a.name_pinyin == b.name_pinyin:
        return "name.pinyin"
    return next((cell for cell, agrees in _NAME_CHECKS[2:] if agrees(a, b)), "name.disagree")


_NAME_CHECKS: tuple[tuple[str, Callable[[Identity, Identity], bool]], ...] = (
    ("name.exact", lambda a, b: a.name == b.name),
    ("name.pinyin", lambda a, b: a.name_pinyin == b.name_pinyin),
    (
        "name.transposed",
        lambda a, b: a.surname == b.surname and len(a.given) == 2 and a.given == b.given[::-1],
    ),
    (
        "name.one_character",
        lambda a, b: len(a.name) == len(b.name) and _one_character_apart(a, b),
    ),
    ("name.fuzzy_pinyin", lambda a, b: a.fuzzy_pinyin == b.fuzzy_pinyin),
    ("name.surname_only", lambda a, b: a.surname_pinyin == b.surname_pinyin),
)


def _one_character_apart(a: Identity, b: Identity) -> bool:
    """One character differs, and for a two-character name it is not the whole given name."""
    differing = [i for i, (x, y) in enumerate(zip(a.name, b.name, strict=True)) if x != y]
    return len(differing) == 1 and (len(a.name) > 2 or differing[0] == 0)


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
