"""The simulated residents: valid resident ids, households, names and ages."""

from __future__ import annotations

from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from events.validation import parse_resident_id
from simulator import names
from simulator.identity import is_valid_resident_id, resident_id
from simulator.population import Population, Township, build_population

TOWNSHIPS = [Township(f"镇{i}", tuple(f"{i}村{j}" for j in range(6))) for i in range(5)]
AS_OF = date(2025, 6, 1)


def population(seed: int, size: int = 3000) -> Population:
    return build_population(seed, size, TOWNSHIPS, "439901", AS_OF, ["439902", "439903"])


def test_a_known_resident_id_has_the_published_check_character() -> None:
    # The GB 11643-1999 worked example: 11010519491231002X.
    assert resident_id("110105", date(1949, 12, 31), 2) == "11010519491231002X"
    assert not is_valid_resident_id("110105194912310021")


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_every_resident_id_is_valid_and_agrees_with_sex_and_birth_date(seed: int) -> None:
    people = population(seed, 400).people
    for person in people:
        decoded = parse_resident_id(person.id_number)
        assert decoded.birth_date == person.birth_date
        assert decoded.male == (person.sex == "M")
        assert decoded.division_code in ("439901", "439902", "439903")
    assert len({p.id_number for p in people}) == len(people)


def test_same_seed_same_people_and_different_seed_different_people() -> None:
    assert population(7).people == population(7).people
    assert population(7).people != population(8).people


def test_households_share_an_address_and_usually_a_phone() -> None:
    pop = population(1)
    shared_phone = 0
    for household in pop.households:
        assert len({m.address for m in household.members}) == 1
        phones = Counter(m.phone for m in household.members)
        shared_phone += len(household.members) > 1 and phones.most_common(1)[0][1] > 1
    multi = sum(len(h.members) > 1 for h in pop.households)
    assert shared_phone > multi * 0.5


def test_surnames_follow_their_frequencies_and_names_are_one_or_two_characters() -> None:
    people = population(3, 8000).people
    top = [s for s, _ in Counter(p.surname for p in people).most_common(5)]
    assert set(top) <= {"王", "李", "张", "刘", "陈", "杨"}
    assert all(1 <= len(p.given_name) <= 2 for p in people)
    assert {len(p.given_name) for p in people} == {1, 2}
    assert any(p.surname in names.SURNAME_READINGS for p in people)


def test_the_age_pyramid_has_children_and_old_people() -> None:
    people = population(5, 8000).people
    ages = [(AS_OF - p.birth_date).days // 365 for p in people]
    children = sum(a < 15 for a in ages) / len(ages)
    elderly = sum(a >= 65 for a in ages) / len(ages)
    assert 0.08 < children < 0.3
    assert 0.1 < elderly < 0.35
    assert max(ages) < 100 and min(ages) >= 0
    sexes = Counter(p.sex for p in people)
    assert 0.9 < sexes["M"] / sexes["F"] < 1.15


def test_mobile_numbers_look_like_mainland_mobiles() -> None:
    for person in population(2, 500).people:
        assert person.phone is not None
        assert len(person.phone) == 11 and person.phone[0] == "1" and person.phone[1] in "3456789"
