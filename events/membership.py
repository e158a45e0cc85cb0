"""The member institutions of the consortium, read from a CSV file (bundled county by default)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from consortium.settings import get_settings

BUNDLED_MEMBERSHIP = Path(__file__).resolve().parent / "data" / "membership.csv"
CODE_PATTERN = re.compile(r"^\d{6}-(C\d{2}|S\d{2}|T\d{2}|V\d{3})$", re.ASCII)
COLUMNS = ("code", "name", "level", "parent_code", "beds", "township_division_code")


class InstitutionLevel(StrEnum):
    """The level of care an institution provides."""

    COUNTY_HOSPITAL = "county_hospital"
    SPECIALIST_HOSPITAL = "specialist_hospital"
    TOWNSHIP_CENTRE = "township_centre"
    VILLAGE_CLINIC = "village_clinic"

    @property
    def tier(self) -> int:
        """Higher is a higher level of care; county and specialist hospitals share one tier."""
        return _TIERS[self]


_TIERS = {
    InstitutionLevel.COUNTY_HOSPITAL: 3,
    InstitutionLevel.SPECIALIST_HOSPITAL: 3,
    InstitutionLevel.TOWNSHIP_CENTRE: 2,
    InstitutionLevel.VILLAGE_CLINIC: 1,
}

# Which level a parent must have: the consortium is led by the county hospital (牵头医院).
_PARENT_LEVEL = {
    InstitutionLevel.COUNTY_HOSPITAL: None,
    InstitutionLevel.SPECIALIST_HOSPITAL: InstitutionLevel.COUNTY_HOSPITAL,
    InstitutionLevel.TOWNSHIP_CENTRE: InstitutionLevel.COUNTY_HOSPITAL,
    InstitutionLevel.VILLAGE_CLINIC: InstitutionLevel.TOWNSHIP_CENTRE,
}


class MembershipError(ValueError):
    """The membership file is malformed or inconsistent."""


class UnknownInstitution(LookupError):  # noqa: N818 - named like UnknownEventType
    """An institution code that is not a member of the consortium."""

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown institution code {code!r}: not a member of the consortium")
        self.code = code


@dataclass(frozen=True)
class Institution:
    """One member institution."""

    code: str
    name: str
    level: InstitutionLevel
    parent_code: str | None
    beds: int
    township_division_code: str


@dataclass(frozen=True)
class Membership:
    """All member institutions, looked up by code."""

    institutions: tuple[Institution, ...]
    _by_code: dict[str, Institution] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {i.code: i for i in self.institutions})
        _check(self)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[Institution]:
        return iter(self.institutions)

    def __len__(self) -> int:
        return len(self.institutions)

    def get(self, code: str) -> Institution | None:
        """The institution with this code, or None."""
        return self._by_code.get(code)

    def __getitem__(self, code: str) -> Institution:
        found = self._by_code.get(code)
        if found is None:
            raise UnknownInstitution(code)
        return found

    def children(self, code: str) -> tuple[Institution, ...]:
        """The institutions whose parent is this one."""
        if code not in self:
            raise UnknownInstitution(code)
        return tuple(i for i in self.institutions if i.parent_code == code)

    def at_level(self, level: InstitutionLevel | str) -> tuple[Institution, ...]:
        """The institutions of one level."""
        wanted = InstitutionLevel(level)
        return tuple(i for i in self.institutions if i.level is wanted)

    def level(self, code: str) -> InstitutionLevel:
        """The level of the institution with this code."""
        return self[code].level


def _check(membership: Membership) -> None:
    """Refuse duplicate or malformed codes and parents of the wrong level."""
    if len(membership._by_code) != len(membership.institutions):
        raise MembershipError("duplicate institution codes in the membership")
    for inst in membership.institutions:
        if not CODE_PATTERN.fullmatch(inst.code):
            raise MembershipError(
                f"institution code {inst.code!r} is not <division>-C01/S01/T01/V001"
            )
        if not re.fullmatch(r"[0-9]{9}", inst.township_division_code):
            raise MembershipError(
                f"institution {inst.code}: township division code must be 9 digits"
            )
        if inst.beds < 0:
            raise MembershipError(f"institution {inst.code}: beds must not be negative")
        wanted = _PARENT_LEVEL[inst.level]
        parent = membership.get(inst.parent_code) if inst.parent_code else None
        if wanted is None and inst.parent_code is not None:
            raise MembershipError(f"institution {inst.code}: a county hospital has no parent")
        if wanted is not None and (parent is None or parent.level is not wanted):
            raise MembershipError(f"institution {inst.code}: parent must be a {wanted.value}")


def read_membership(path: Path) -> Membership:
    """Read a membership CSV whose columns are COLUMNS."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise MembershipError(f"{path}: columns must be {','.join(COLUMNS)}")
        try:
            rows = tuple(
                Institution(
                    code=row["code"],
                    name=row["name"],
                    level=InstitutionLevel(row["level"]),
                    parent_code=row["parent_code"] or None,
                    beds=int(row["beds"]),
                    township_division_code=row["township_division_code"],
                )
                for row in reader
            )
        except ValueError as exc:
            raise MembershipError(f"{path}: {exc}") from exc
    return Membership(rows)


@lru_cache(maxsize=8)
def _load_cached(path: Path) -> Membership:
    return read_membership(path)


@lru_cache(maxsize=8)
def _load_named(path: Path) -> Membership:
    # Resolving the path costs a system call per part; the gateway asks once per request.
    return _load_cached(path.resolve())


def load_membership(path: Path | None = None) -> Membership:
    """The membership at path, else at the settings' membership_file, else the bundled one."""
    return _load_named(path or get_settings().membership_file or BUNDLED_MEMBERSHIP)
