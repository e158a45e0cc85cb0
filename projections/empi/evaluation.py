"""A labelled set of noisy Chinese identities and the precision and recall of the index on it."""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from events.patient import PatientRegistered
from events.person import AgreementLevel, MatchField
from projections.empi.config import lead_institution
from projections.empi.identity import Demographics, Identity, IdHasher, RecordKey, identity_of
from projections.empi.index import IndexConfig, IndexState, apply, new_state
from projections.empi.matcher import CELLS, WEIGHTS, Thresholds, blocking_keys, compare
from simulator.clock import CHINA
from simulator.county import County, SimulationConfig
from simulator.noise import HOSPITAL, NoiseRates, Registration, register
from simulator.population import Person
from simulator.sites import Site

# How many members one resident has registered at (village clinic, township, hospitals);
# 5 means a duplicate registration at one of them.
REGISTRATIONS_PER_PERSON: Mapping[int, float] = {1: 30, 2: 35, 3: 20, 4: 10, 5: 5}
EVALUATION_KEY = b"empi-evaluation-key-not-a-secret"
START = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
Progress = Callable[[int], None]
SOFT_FIELDS = frozenset(
    {MatchField.BIRTH_DATE, MatchField.SEX, MatchField.PHONE, MatchField.ADDRESS}
)
SOFT_CAP, HARD_CAP = 8.0, 20.0
# How members' systems write what they record, drawn apart from the simulator's noise: a mobile
# with the country code or the long-distance 0, group and house numbers in Chinese numerals
# (三组十二号), a hospital's address with the province and county, with or without 省/县, the
# resident id recorded as the insurance number (the 社会保障号码 is the 公民身份号码).
WRITTEN_FORMS: Mapping[str, float] = {
    "phone_format": 0.03,
    "chinese_numerals": 0.03,
    "division_prefix": 0.05,
    "id_as_insurance": 0.03,
}
_PHONE_FORMS = ("+86 {p}", "0086-{p}", "0{p}", "86{p}")
_NUMBER_IN_ADDRESS = re.compile(r"(\d+)(组|号)")
_DIVISION_PREFIXES = ("湖南省云溪县", "湖南云溪", "湖南省云溪")
# Weights for cells a training set cannot show (the contracts refuse a wrong check digit).
PRIORS: Mapping[str, float] = {"id.first17": 8.0}


@dataclass(frozen=True)
class LabelledSet:
    """Registrations in arrival order and the true person behind each local record."""

    registrations: list[PatientRegistered]
    truth: dict[RecordKey, str]
    noise: dict[RecordKey, tuple[str, ...]]


@dataclass(frozen=True)
class Evaluation:
    """Pairwise precision and recall of the index's person assignment."""

    identities: int
    persons: int
    precision: float
    recall: float
    true_pairs: int
    linked_pairs: int
    correct_pairs: int
    reviews: int
    seed: int


def labelled_identities(count: int, seed: int, rates: NoiseRates | None = None) -> LabelledSet:
    """`count` registrations of simulated residents at the members they use, noise included."""
    rng = random.Random(f"empi-evaluation:{seed}")
    mean = sum(k * w for k, w in REGISTRATIONS_PER_PERSON.items()) / sum(
        REGISTRATIONS_PER_PERSON.values()
    )
    size = math.ceil(count / mean * 1.1) + 50  # households overshoot; spare residents are unused
    county = County(SimulationConfig(seed=seed, days=1, population=size, start=START))
    kin = {h.number: h.members for h in county.population.households}
    hospitals = [s for s in county.sites.values() if s.kind not in ("village", "township")]
    counts, weights = list(REGISTRATIONS_PER_PERSON), list(REGISTRATIONS_PER_PERSON.values())
    planned: list[tuple[Person, Site]] = []
    for person in county.population.people:
        k = rng.choices(counts, weights)[0]
        planned += [(person, site) for site in _sites(county, person, hospitals, k, rng)]
        if len(planned) >= count:
            break
    planned = planned[:count]
    rng.shuffle(planned)
    registrations: list[PatientRegistered] = []
    truth: dict[RecordKey, str] = {}
    garbled: dict[RecordKey, tuple[str, ...]] = {}
    noise = rates or NoiseRates()
    # A draw of its own: the identities and their noise stay those of the seed before it.
    forms = random.Random(f"empi-evaluation-forms:{seed}")
    for n, (person, site) in enumerate(planned):
        at = START + timedelta(seconds=30 * n)
        # A swapped day and month must not move a birth past the registration's day in the
        # county (an infant born on 8 January registered in March would be "born" on 1 August).
        today = at.astimezone(CHINA).date()
        reg = register(person, site.noise_level, rng, noise, kin[person.household], today)
        reg = _written(reg, forms, site.noise_level == HOSPITAL)
        local_id = site.new_patient_id()
        registrations.append(
            PatientRegistered.model_validate(
                {
                    "envelope": {
                        "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                        "event_type": "PatientRegistered",
                        "occurred_at": at,
                        "recorded_at": at,
                        "source": site.code,
                        "patient_local_id": local_id,
                    },
                    "resident_id_number": reg.id_number,
                    "medical_insurance_number": reg.insurance_number,
                    "name": reg.name,
                    "sex": "MALE" if reg.sex == "M" else "FEMALE",
                    "birth_date": reg.birth_date,
                    "ethnicity": reg.ethnicity,
                    "phone": reg.phone,
                    "address": reg.address,
                    "township_division_code": county.townships[
                        person.township
                    ].township_division_code,
                },
                context={"replay": True},
            )
        )
        truth[(site.code, local_id)] = person.key
        garbled[(site.code, local_id)] = reg.noise
    return LabelledSet(registrations, truth, garbled)


def _written(reg: Registration, rng: random.Random, hospital: bool) -> Registration:
    """The registration as a member's system writes it (see WRITTEN_FORMS)."""
    applied: list[str] = []
    phone, address, insurance = reg.phone, reg.address, reg.insurance_number
    if reg.id_number is not None and rng.random() < WRITTEN_FORMS["id_as_insurance"]:
        applied.append("id_as_insurance")
        insurance = reg.id_number
    if phone is not None and rng.random() < WRITTEN_FORMS["phone_format"]:
        applied.append("phone_format")
        phone = rng.choice(_PHONE_FORMS).format(p=phone)
    if address is not None and rng.random() < WRITTEN_FORMS["chinese_numerals"]:
        written = _NUMBER_IN_ADDRESS.sub(lambda m: _chinese_numeral(int(m[1])) + m[2], address)
        if written != address:  # a village alone has no number
            applied.append("chinese_numerals")
            address = written
    if address is not None and hospital and rng.random() < WRITTEN_FORMS["division_prefix"]:
        applied.append("division_prefix")
        address = rng.choice(_DIVISION_PREFIXES) + address
    if not applied:
        return reg
    return replace(
        reg, phone=phone, address=address, insurance_number=insurance, noise=(*reg.noise, *applied)
    )


def _chinese_numeral(n: int) -> str:
    """1 to 999 in Chinese numerals as a clerk writes them: 十二, 二十, 一百零五, 一百六十九."""
    digits = "〇一二三四五六七八九"
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    text = f"{digits[hundreds]}百" if hundreds else ""
    if tens:
        text += f"{digits[tens]}十" if hundreds or tens > 1 else "十"
    elif hundreds and units:
        text += "零"
    return text + (digits[units] if units else "")


def _sites(
    county: County, person: Person, hospitals: list[Site], k: int, rng: random.Random
) -> list[Site]:
    """The members a resident registered at: nearest first, a duplicate when k exceeds them."""
    near = [s for s in (county.village_clinic(person), county.township_site(person)) if s]
    options = [*near, rng.choice(hospitals), rng.choice(hospitals)]
    chosen = list({site.code: site for site in options}.values())[: min(k, 4)]
    while len(chosen) < k:
        chosen.append(rng.choice(chosen))  # registered twice at one member
    return chosen


def evaluation_config(
    weights: Mapping[str, float] = WEIGHTS, thresholds: Thresholds | None = None
) -> IndexConfig:
    """The index configuration the evaluation runs with (a fixed, public hash key)."""
    return IndexConfig(
        hasher=IdHasher(EVALUATION_KEY),
        index_institution=lead_institution(),
        weights=weights,
        thresholds=thresholds or Thresholds(),
    )


def run_index(labelled: LabelledSet, config: IndexConfig, progress: Progress | None) -> IndexState:
    """Feed every registration to a fresh index, in arrival order."""
    state = new_state(config)
    for n, event in enumerate(labelled.registrations, 1):
        state, _ = apply(state, event)
        if progress is not None and n % 500 == 0:
            progress(500)
    if progress is not None:
        progress(len(labelled.registrations) % 500)
    return state


def evaluate(
    identities: int,
    seed: int,
    config: IndexConfig | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Run the index over a labelled set and score its pairwise link decisions."""
    labelled = labelled_identities(identities, seed)
    state = run_index(labelled, config or evaluation_config(), progress)
    return score(labelled, state, seed)


def score(labelled: LabelledSet, state: IndexState, seed: int) -> Evaluation:
    """Pairwise precision and recall: pairs in one person versus pairs truly one resident."""
    assigned = {key: state.person_of[key] for key in labelled.truth}
    together = Counter((assigned[k], person) for k, person in labelled.truth.items())
    predicted = Counter(assigned.values())
    actual = Counter(labelled.truth.values())
    correct = _pairs(together.values())
    linked, true = _pairs(predicted.values()), _pairs(actual.values())
    return Evaluation(
        identities=len(labelled.truth),
        persons=len(actual),
        precision=correct / linked if linked else 1.0,
        recall=correct / true if true else 1.0,
        true_pairs=true,
        linked_pairs=linked,
        correct_pairs=correct,
        reviews=len(state.reviews),
        seed=seed,
    )


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def estimate_weights(labelled: LabelledSet, hasher: IdHasher) -> dict[str, float]:
    """log2(m/u) per comparison cell over the pairs blocking yields (on a training set only).

    Weights are kept monotone: an agreement never counts against a match, a disagreement never
    for it, a missing value and an agreement implied by the resident id weigh nothing.
    """
    matches: Counter[str] = Counter()
    others: Counter[str] = Counter()
    blocks: dict[str, list[RecordKey]] = {}
    identities: dict[RecordKey, Identity] = {}
    for event in labelled.registrations:
        key = (event.envelope.source, event.envelope.patient_local_id or "")
        identity = identity_of(Demographics.of(event, hasher))
        identities[key] = identity
        seen: set[RecordKey] = set()
        for block in blocking_keys(identity):
            for other in blocks.get(block, []):
                if other not in seen:
                    seen.add(other)
                    same = labelled.truth[key] == labelled.truth[other]
                    (matches if same else others).update(compare(identity, identities[other]).cells)
            blocks.setdefault(block, []).append(key)
    return {cell: _monotone(cell, matches, others) for cell in CELLS}


def _monotone(cell: str, matches: Counter[str], others: Counter[str]) -> float:
    field, level, detail = CELLS[cell]
    if level is AgreementLevel.MISSING or detail == "implied_by_resident_id":
        return 0.0
    pairs_m, pairs_u = sum(matches.values()) / 7, sum(others.values()) / 7
    weight = math.log2(((matches[cell] + 0.5) / pairs_m) / ((others[cell] + 0.5) / pairs_u))
    if matches[cell] + others[cell] == 0:
        return PRIORS.get(cell, 0.0)  # never seen in training: the designer's prior stands
    weight = min(weight, 0.0) if level is AgreementLevel.DISAGREE else max(weight, 0.0)
    # Soft demographics change in life (people move, change phones) more than in a simulation.
    cap = SOFT_CAP if field in SOFT_FIELDS else HARD_CAP
    return round(max(-cap, min(cap, weight)), 1)
