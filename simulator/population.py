"""A deterministic resident population of a county, household by household, from a seed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from simulator import names
from simulator.identity import insurance_number, mobile_number, random_sequence, resident_id


@dataclass(frozen=True)
class Township:
    """A township of the county and the villages it administers."""

    name: str
    villages: tuple[str, ...]


@dataclass(frozen=True)
class Person:
    """One true resident; `key` is what the patient index should rediscover."""

    key: str
    household: int
    surname: str
    given_name: str
    sex: str
    birth_date: date
    id_number: str
    insurance_number: str
    phone: str | None
    previous_phone: str | None
    township: int
    village: str
    address: str
    ethnicity: str

    @property
    def name(self) -> str:
        """The full name, surname first."""
        return self.surname + self.given_name


@dataclass(frozen=True)
class Household:
    """People who share an address and, often, a phone."""

    number: int
    township: int
    village: str
    address: str
    members: tuple[Person, ...]


@dataclass(frozen=True)
class Population:
    """The residents of a county on a given day."""

    as_of: date
    households: tuple[Household, ...]
    people: tuple[Person, ...] = field(init=False)

    def __post_init__(self) -> None:
        people = tuple(p for h in self.households for p in h.members)
        object.__setattr__(self, "people", people)

    def in_township(self, township: int) -> list[Person]:
        """The residents of one township."""
        return [p for p in self.people if p.township == township]


# Household shapes of a rural Chinese county (7th census): many elderly live alone or with
# grandchildren while the working-age generation works in the cities.
HOUSEHOLD_SHAPES: dict[str, float] = {
    "elderly_couple": 18,
    "elderly_single": 8,
    "nuclear": 30,
    "three_generations": 22,
    "left_behind": 10,
    "single_adult": 7,
    "young_couple": 5,
}

# Share of wives born (and so id-registered) in another county of the province.
MARRIED_IN_SHARE = 0.3
PHONE_OWNERSHIP = {"child": 0.0, "teen": 0.5, "adult": 0.92, "elderly": 0.45}
CHANGED_PHONE_SHARE = 0.15
# GB/T 3304 codes: 汉族 with the minorities of the hill counties of central China.
ETHNICITIES: dict[str, float] = {"01": 90, "15": 5, "06": 3, "13": 2}


@dataclass
class _Draft:
    surname: str
    given_name: str
    sex: str
    birth_date: date
    division: str


class _Builder:
    """Draws households until the population reaches its size."""

    def __init__(
        self, seed: int, county_division: str, neighbours: Sequence[str], as_of: date
    ) -> None:
        self.rng = random.Random(f"population:{seed}")
        self.county = county_division
        self.neighbours = tuple(neighbours) or (county_division,)
        self.as_of = as_of
        self.used_ids: set[str] = set()
        self.used_phones: set[str] = set()
        self.serial = 0

    def birth(self, age: int) -> date:
        return self.as_of - timedelta(days=age * 365 + self.rng.randrange(365) + age // 4)

    def adult(self, sex: str, age: int, surname: str | None = None) -> _Draft:
        born = self.birth(age)
        division = self.county
        if sex == "F" and surname is None and self.rng.random() < MARRIED_IN_SHARE:
            division = self.rng.choice(self.neighbours)
        return _Draft(
            surname or names.surname(self.rng),
            names.given_name(self.rng, sex, born.year),
            sex,
            born,
            division,
        )

    def children(self, surname: str, mother_age: int, count: int) -> list[_Draft]:
        kids: list[_Draft] = []
        ages = sorted((mother_age - self.rng.randint(20, 36) for _ in range(count)), reverse=True)
        ages = [a for a in ages if a >= 0]
        shared = {
            sex: names.generation_char(self.rng, sex) if ages and ages[0] > 40 else ""
            for sex in ("M", "F")
        }
        for age in ages:
            sex = "M" if self.rng.random() < 0.52 else "F"
            born = self.birth(age)
            given = names.given_name(self.rng, sex, born.year, shared[sex] if len(ages) > 1 else "")
            kids.append(_Draft(surname, given, sex, born, self.county))
        return kids

    def couple(self, lo: int, hi: int) -> list[_Draft]:
        age = self.rng.randint(lo, hi)
        husband = self.adult("M", age)
        wife = self.adult("F", max(18, age - self.rng.randint(-2, 5)))
        return [husband, wife]

    def elders(self, lo: int, hi: int, count: int) -> tuple[list[_Draft], str]:
        """Grandparents who live in the household, and the family (paternal) surname."""
        pair = self.couple(lo, hi)
        if count == 2:
            return pair, pair[0].surname
        # Women outlive their husbands: a lone grandparent is most often the grandmother.
        return ([pair[1]] if self.rng.random() < 0.65 else [pair[0]]), pair[0].surname

    def shape(self, kind: str) -> list[_Draft]:
        rng = self.rng
        if kind == "elderly_single":
            return [self.adult("F" if rng.random() < 0.7 else "M", rng.randint(65, 95))]
        if kind == "single_adult":
            return [self.adult("M" if rng.random() < 0.6 else "F", rng.randint(20, 60))]
        if kind in ("elderly_couple", "young_couple"):
            return self.couple(60, 90) if kind == "elderly_couple" else self.couple(22, 35)
        return {
            "nuclear": self.nuclear,
            "three_generations": self.three_generations,
            "left_behind": self.left_behind,
        }[kind]()

    def nuclear(self) -> list[_Draft]:
        parents = self.couple(26, 55)
        n = self.rng.choices((1, 2, 3), (45, 45, 10))[0]
        return parents + self.children(parents[0].surname, _age(parents[1], self), n)

    def three_generations(self) -> list[_Draft]:
        rng = self.rng
        elders, family = self.elders(55, 85, rng.choice((1, 2)))
        elder_age = _age(elders[-1], self)
        son = self.adult("M", max(20, elder_age - rng.randint(22, 32)), family)
        wife = self.adult("F", max(20, _age(son, self) - rng.randint(-2, 5)))
        kids = self.children(son.surname, _age(wife, self), rng.choice((0, 1, 1, 2)))
        return [*elders, son, wife, *kids]

    def left_behind(self) -> list[_Draft]:
        # Grandparents raise the children of parents working in the cities (留守儿童).
        rng = self.rng
        elders, family = self.elders(50, 80, rng.choice((1, 2, 2)))
        parent_age = max(20, _age(elders[-1], self) - rng.randint(22, 30))
        return self.children(family, parent_age, rng.choice((1, 1, 2))) + elders

    def finish(self, draft: _Draft) -> tuple[str, str]:
        """Assign a unique resident id and an insurance number."""
        while True:
            rid = resident_id(
                draft.division, draft.birth_date, random_sequence(self.rng, draft.sex)
            )
            if rid not in self.used_ids:
                self.used_ids.add(rid)
                break
        self.serial += 1
        return rid, insurance_number(self.county, self.serial)

    def phone(self) -> str:
        while (number := mobile_number(self.rng)) in self.used_phones:
            pass
        self.used_phones.add(number)
        return number


def _age(draft: _Draft, builder: _Builder) -> int:
    return (builder.as_of - draft.birth_date).days // 365


def _life_stage(age: int) -> str:
    if age < 14:
        return "child"
    if age < 18:
        return "teen"
    return "adult" if age < 70 else "elderly"


def build_population(
    seed: int,
    size: int,
    townships: Sequence[Township],
    county_division: str,
    as_of: date,
    neighbours: Sequence[str] = (),
) -> Population:
    """Residents of the county, about `size` of them, spread over townships by household."""
    builder = _Builder(seed, county_division, neighbours, as_of)
    rng = builder.rng
    kinds, weights = list(HOUSEHOLD_SHAPES), list(HOUSEHOLD_SHAPES.values())
    households: list[Household] = []
    count = 0
    while count < size:
        number = len(households)
        township = number % len(townships)
        village = rng.choice(townships[township].villages)
        address = (
            f"{townships[township].name}{village}{rng.randint(1, 12)}组{rng.randint(1, 199)}号"
        )
        drafts = builder.shape(rng.choices(kinds, weights)[0])
        owners = [rng.random() < PHONE_OWNERSHIP[_life_stage(_age(d, builder))] for d in drafts]
        # The first owner's mobile is the household's; with no owner, a migrant child's.
        home_phone = builder.phone()
        ethnicity = rng.choices(list(ETHNICITIES), list(ETHNICITIES.values()))[0]
        members: list[Person] = []
        for draft, owns in zip(drafts, owners, strict=True):
            rid, insurance = builder.finish(draft)
            first_owner = owns and owners.index(True) == len(members)
            phone = builder.phone() if owns and not first_owner else home_phone
            previous = builder.phone() if owns and rng.random() < CHANGED_PHONE_SHARE else None
            members.append(
                Person(
                    key=f"P{count + len(members):07d}",
                    household=number,
                    surname=draft.surname,
                    given_name=draft.given_name,
                    sex=draft.sex,
                    birth_date=draft.birth_date,
                    id_number=rid,
                    insurance_number=insurance,
                    phone=phone,
                    previous_phone=previous,
                    township=township,
                    village=village,
                    address=address,
                    ethnicity=ethnicity,
                )
            )
        households.append(Household(number, township, village, address, tuple(members)))
        count += len(members)
    return Population(as_of, tuple(households))
