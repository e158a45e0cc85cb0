"""Messy registrations: the rates are what they say, the events stay valid, the truth is kept."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from uuid import uuid4

import pytest

from events.patient import PatientRegistered
from simulator.characters import HOMOPHONES, TRADITIONAL
from simulator.noise import (
    HOSPITAL,
    NO_NOISE,
    VILLAGE,
    NoiseRates,
    Registration,
    Truth,
    register,
)
from simulator.population import Population, Township, build_population

TOWNSHIPS = [Township("龙潭镇", ("下岭村", "杨溪村"))]


@pytest.fixture(scope="module")
def residents() -> Population:
    return build_population(11, 6000, TOWNSHIPS, "439901", date(2025, 6, 1))


def registrations(pop: Population, level: str, rates: NoiseRates) -> list[Registration]:
    rng = random.Random(3)
    kin = {h.number: h.members for h in pop.households}
    return [register(p, level, rng, rates, kin[p.household]) for p in pop.people]


def share(regs: list[Registration], kind: str) -> float:
    return sum(kind in r.noise for r in regs) / len(regs)


def test_missing_ids_follow_the_rate_of_the_level(residents: Population) -> None:
    village = registrations(residents, VILLAGE, NoiseRates())
    hospital = registrations(residents, HOSPITAL, NoiseRates())
    assert share(village, "missing_id") == pytest.approx(0.35, abs=0.03)
    assert share(hospital, "missing_id") == pytest.approx(0.03, abs=0.01)
    assert all(r.id_number is None for r in village if "missing_id" in r.noise)


def test_name_noise_follows_its_rates(residents: Population) -> None:
    rates = NoiseRates(homophone=0.2, traditional=0.1)
    regs = registrations(residents, HOSPITAL, rates)
    eligible = sum(any(c in HOMOPHONES for c in p.name) for p in residents.people)
    assert share(regs, "homophone") == pytest.approx(0.2 * eligible / len(regs), abs=0.03)
    for reg, person in zip(regs, residents.people, strict=True):
        if "homophone" in reg.noise and "traditional" not in reg.noise:
            assert reg.name != person.name and len(reg.name) == len(person.name)
        if "traditional" in reg.noise:
            assert any(c in TRADITIONAL.values() for c in reg.name)


def test_without_noise_the_registration_is_the_truth(residents: Population) -> None:
    for reg, person in zip(
        registrations(residents, VILLAGE, NO_NOISE), residents.people, strict=True
    ):
        assert reg.noise == ()
        assert (reg.name, reg.id_number, reg.birth_date, reg.sex, reg.phone) == (
            person.name,
            person.id_number,
            person.birth_date,
            person.sex,
            person.phone,
        )


def test_swapped_birth_dates_only_where_no_id_contradicts_them(residents: Population) -> None:
    rates = NoiseRates(swapped_birth_date=1.0)
    regs = registrations(residents, VILLAGE, rates)
    swapped = [r for r in regs if "swapped_birth_date" in r.noise]
    assert swapped
    people = {p.key: p for p in residents.people}
    for reg in swapped:
        truth = people[reg.person_key].birth_date
        assert reg.id_number is None
        assert (reg.birth_date.month, reg.birth_date.day) == (truth.day, truth.month)


def test_kin_ids_carry_the_relatives_birth_date_and_sex(residents: Population) -> None:
    regs = registrations(residents, HOSPITAL, NoiseRates(kin_id=0.5))
    people = {p.id_number: p for p in residents.people}
    borrowed = [r for r in regs if "kin_id" in r.noise]
    assert borrowed
    for reg in borrowed:
        owner = people[reg.id_number or ""]
        assert owner.key != reg.person_key
        assert (reg.birth_date, reg.sex) == (owner.birth_date, owner.sex)


@pytest.mark.parametrize("level", [VILLAGE, HOSPITAL])
def test_every_noisy_registration_is_a_valid_event(residents: Population, level: str) -> None:
    rates = NoiseRates(homophone=0.3, kin_id=0.1, full_width=0.3, traditional=0.2)
    for reg in registrations(residents, level, rates)[:1500]:
        now = datetime.now(UTC)
        envelope = {
            "event_id": uuid4(),
            "event_type": "PatientRegistered",
            "occurred_at": now,
            "recorded_at": now,
            "source": "439901-T02",
            "patient_local_id": "JD020000001",
        }
        PatientRegistered.model_validate(
            {
                "envelope": envelope,
                "resident_id_number": reg.id_number,
                "name": reg.name,
                "sex": "MALE" if reg.sex == "M" else "FEMALE",
                "birth_date": reg.birth_date,
                "phone": reg.phone,
                "address": reg.address,
            }
        )


def test_homophone_groups_are_symmetric() -> None:
    for char, others in HOMOPHONES.items():
        assert char not in others
        for other in others:
            assert char in HOMOPHONES[other]


def test_the_truth_maps_local_ids_to_people_and_writes_json_lines(tmp_path: Path) -> None:
    truth = Truth()
    reg = Registration(
        "P0000001", "章伟", "M", date(1980, 1, 2), None, None, None, None, "01", ("homophone",)
    )
    truth.record("439901-V001", "V001-00001", reg)
    truth.transfer("P0000001", "439901-T01", "439901-C01", datetime(2025, 1, 1, tzinfo=UTC))
    assert truth.person_of("439901-V001", "V001-00001") == "P0000001"
    path = tmp_path / "truth.jsonl"
    truth.write(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {
        "kind": "registration",
        "source": "439901-V001",
        "patient_local_id": "V001-00001",
        "person": "P0000001",
        "noise": ["homophone"],
    }
    assert rows[1]["kind"] == "unreferred_transfer" and rows[1]["to_institution"] == "439901-C01"
    assert Counter(r["kind"] for r in rows) == {"registration": 1, "unreferred_transfer": 1}


def test_a_swapped_birth_date_never_lands_after_the_day_of_registration(
    residents: Population,
) -> None:
    # A newborn registered on 2025-08-20, born 2025-08-10: swapping day and month would give
    # 2025-10-08, a birth after the registration that the event model refuses.
    baby = replace(residents.people[0], birth_date=date(2025, 8, 10))
    rates = NoiseRates(
        missing_id=MappingProxyType({VILLAGE: 1.0, HOSPITAL: 1.0}), swapped_birth_date=1.0
    )
    today = date(2025, 8, 20)
    for seed in range(50):
        reg = register(baby, VILLAGE, random.Random(seed), rates, today=today)
        assert reg.birth_date <= today
    # Older people's dates are still swapped at that rate.
    adult = replace(residents.people[0], birth_date=date(1980, 3, 7))
    swapped = register(adult, VILLAGE, random.Random(0), rates, today=today)
    assert swapped.birth_date == date(1980, 7, 3)
