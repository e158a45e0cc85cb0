"""Messy identity data as member hospitals record it, with the truth kept aside for scoring."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType

from simulator.characters import FULL_WIDTH_DIGITS, HOMOPHONES, LOOK_ALIKES, TRADITIONAL
from simulator.identity import sex_of_resident_id
from simulator.population import Person

VILLAGE, TOWNSHIP, HOSPITAL = "village_clinic", "township_centre", "hospital"

# Draws against a rate and, on a hit, records that kind of noise (see `register`).
_Hit = Callable[[str, float], bool]


def _by_level(village: float, township: float, hospital: float) -> Mapping[str, float]:
    return MappingProxyType({VILLAGE: village, TOWNSHIP: township, HOSPITAL: hospital})


@dataclass(frozen=True)
class NoiseRates:
    """Chance of each kind of error in one registration; see docs/simulator.md."""

    # Village clinics often register from what the patient says, without the id card.
    missing_id: Mapping[str, float] = field(default_factory=lambda: _by_level(0.35, 0.10, 0.03))
    missing_insurance: Mapping[str, float] = field(
        default_factory=lambda: _by_level(0.40, 0.10, 0.02)
    )
    short_address: Mapping[str, float] = field(default_factory=lambda: _by_level(0.5, 0.2, 0.05))
    kin_id: float = 0.01
    homophone: float = 0.04
    look_alike: float = 0.01
    transposed_name: float = 0.005
    traditional: float = 0.01
    full_width: float = 0.02
    # Only where no id is recorded: a model refuses a birth date that contradicts the id.
    swapped_birth_date: float = 0.10
    approximate_birth_date: float = 0.15
    old_phone: float = 0.5
    missing_phone: float = 0.05
    duplicate_registration: float = 0.02

    def at(self, rates: Mapping[str, float], level: str) -> float:
        """A per-level rate; county and specialist hospitals share the hospital rate."""
        return rates.get(level, rates[HOSPITAL])


NO_NOISE = NoiseRates(
    missing_id=_by_level(0, 0, 0),
    missing_insurance=_by_level(0, 0, 0),
    short_address=_by_level(0, 0, 0),
    kin_id=0,
    homophone=0,
    look_alike=0,
    transposed_name=0,
    traditional=0,
    full_width=0,
    swapped_birth_date=0,
    approximate_birth_date=0,
    old_phone=0,
    missing_phone=0,
    duplicate_registration=0,
)


@dataclass(frozen=True)
class Registration:
    """The identity a member recorded for a person, errors included."""

    person_key: str
    name: str
    sex: str
    birth_date: date
    id_number: str | None
    insurance_number: str | None
    phone: str | None
    address: str | None
    ethnicity: str | None
    noise: tuple[str, ...]


def register(
    person: Person,
    level: str,
    rng: random.Random,
    rates: NoiseRates,
    kin: Sequence[Person] = (),
    today: date | None = None,
) -> Registration:
    """What a member at this level records when the person registers there (on today, if given:
    a swapped birth date never lands after it)."""
    applied: list[str] = []

    def hit(kind: str, rate: float) -> bool:
        if rng.random() < rate:
            applied.append(kind)
            return True
        return False

    sex, birth = person.sex, person.birth_date
    id_number: str | None = person.id_number
    others = [k for k in kin if k.key != person.key]
    if hit("missing_id", rates.at(rates.missing_id, level)):
        id_number = None
        if (
            birth.day <= 12
            and birth.day != birth.month
            and (today is None or date(birth.year, birth.day, birth.month) <= today)
            and hit("swapped_birth_date", rates.swapped_birth_date)
        ):
            birth = date(birth.year, birth.day, birth.month)
        elif hit("approximate_birth_date", rates.approximate_birth_date):
            birth = date(birth.year, 1, 1)
    elif others and hit("kin_id", rates.kin_id):
        # Registered with a relative's card: the system fills birth date and sex from it.
        relative = rng.choice(others)
        id_number, birth = relative.id_number, relative.birth_date
        sex = sex_of_resident_id(relative.id_number)
    return Registration(
        person_key=person.key,
        name=_name(person, rng, rates, hit),
        sex=sex,
        birth_date=birth,
        id_number=id_number,
        insurance_number=None
        if hit("missing_insurance", rates.at(rates.missing_insurance, level))
        else person.insurance_number,
        phone=_phone(person, rates, hit),
        address=_address(person, level, rates, hit),
        ethnicity=person.ethnicity,
        noise=tuple(applied),
    )


def _name(person: Person, rng: random.Random, rates: NoiseRates, hit: _Hit) -> str:
    chars = list(person.name)
    sound_alike = [i for i, c in enumerate(chars) if c in HOMOPHONES]
    if sound_alike and hit("homophone", rates.homophone):
        i = rng.choice(sound_alike)
        chars[i] = rng.choice(HOMOPHONES[chars[i]])
    look_alike = [i for i, c in enumerate(chars) if c in LOOK_ALIKES]
    if look_alike and hit("look_alike", rates.look_alike):
        i = rng.choice(look_alike)
        chars[i] = LOOK_ALIKES[chars[i]]
    given = len(person.given_name)
    if given == 2 and hit("transposed_name", rates.transposed_name):
        chars[-2], chars[-1] = chars[-1], chars[-2]
    if any(c in TRADITIONAL for c in chars) and hit("traditional", rates.traditional):
        chars = [TRADITIONAL.get(c, c) for c in chars]
    return "".join(chars)


def _phone(person: Person, rates: NoiseRates, hit: _Hit) -> str | None:
    if hit("missing_phone", rates.missing_phone):
        return None
    if person.previous_phone and hit("old_phone", rates.old_phone):
        return person.previous_phone
    return person.phone


def _address(person: Person, level: str, rates: NoiseRates, hit: _Hit) -> str | None:
    address = person.address
    if hit("short_address", rates.at(rates.short_address, level)):
        # Everybody at the clinic knows where the village is: only the village is written.
        address = person.village
    if hit("full_width", rates.full_width):
        address = address.translate(FULL_WIDTH_DIGITS)
    return address


@dataclass(frozen=True)
class TruthRecord:
    """Which true person a local patient record belongs to, and how it was garbled."""

    source: str
    patient_local_id: str
    person: str
    noise: tuple[str, ...]


@dataclass(frozen=True)
class UnreferredTransfer:
    """A patient discharged at one member and admitted at another with no referral."""

    person: str
    from_institution: str
    to_institution: str
    discharged_at: datetime


@dataclass
class Truth:
    """Every local patient record the simulation created, mapped to its true person."""

    records: dict[tuple[str, str], TruthRecord] = field(default_factory=dict)
    transfers: list[UnreferredTransfer] = field(default_factory=list)

    def record(self, source: str, local_id: str, registration: Registration) -> None:
        """Keep the truth about one registration."""
        self.records[(source, local_id)] = TruthRecord(
            source, local_id, registration.person_key, registration.noise
        )

    def transfer(self, person: str, source: str, target: str, at: datetime) -> None:
        """Keep the truth about a transfer that no referral records."""
        self.transfers.append(UnreferredTransfer(person, source, target, at))

    def person_of(self, source: str, local_id: str) -> str:
        """The true person key behind a local patient id."""
        return self.records[(source, local_id)].person

    def lines(self) -> Iterator[str]:
        """The truth as JSON lines: registrations, then unreferred transfers."""
        for rec in self.records.values():
            row: dict[str, object] = {"kind": "registration", **asdict(rec)}
            yield json.dumps(row, ensure_ascii=False)
        for move in self.transfers:
            row = {"kind": "unreferred_transfer", **asdict(move)}
            row["discharged_at"] = move.discharged_at.isoformat()
            yield json.dumps(row, ensure_ascii=False)

    def write(self, path: Path) -> None:
        """Write the truth as JSON lines."""
        with path.open("w", encoding="utf-8") as fh:
            for line in self.lines():
                fh.write(line + "\n")
