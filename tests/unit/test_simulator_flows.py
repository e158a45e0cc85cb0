"""A simulated week: deterministic, valid, complete, well-formed flows, nothing in the future."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from events.envelope import Event
from events.membership import load_membership
from events.registry import EVENT_TYPES, parse_event
from events.topics import DERIVED_FAMILIES as DERIVED
from events.topics import Family
from simulator.county import County, SimulationConfig
from simulator.simulation import simulate

START = datetime(2025, 3, 2, 16, tzinfo=UTC)  # local midnight, Monday 3 March 2025


def run(config: SimulationConfig) -> tuple[County, list[Event]]:
    county = simulate(config)
    return county, list(county.events())


@pytest.fixture(scope="module")
def week() -> tuple[County, list[Event]]:
    return run(SimulationConfig(seed=1, start=START))


def small(seed: int) -> list[dict[str, object]]:
    _, events = run(SimulationConfig(seed=seed, days=1, population=3000, start=START))
    return [e.model_dump(mode="json") for e in events]


def test_same_seed_same_stream_and_different_seed_different_stream() -> None:
    first = small(5)
    assert first == small(5)
    assert first != small(6)


def test_a_week_at_default_size_has_every_event_type(week: tuple[County, list[Event]]) -> None:
    _, events = week
    counts = Counter(e.envelope.event_type for e in events)
    # Hospitals publish every type but the patient index's own decisions.
    members = {t for t, cls in EVENT_TYPES.items() if cls.family not in {Family.PERSON, *DERIVED}}
    assert set(counts) == members
    assert 15_000 < len(events) < 60_000


def test_every_event_validates_through_its_json_form(week: tuple[County, list[Event]]) -> None:
    county, events = week
    checks = {"membership": county.membership}
    for event in events:
        assert parse_event(event.model_dump(mode="json"), checks=checks) == event  # type: ignore[arg-type]


def test_events_come_in_time_order_with_unique_ids(week: tuple[County, list[Event]]) -> None:
    _, events = week
    times = [e.envelope.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.envelope.event_id for e in events}) == len(events)
    for event in events:
        lag = event.envelope.recorded_at - event.envelope.occurred_at
        assert timedelta(0) <= lag <= timedelta(hours=5)


def test_causes_precede_their_effects(week: tuple[County, list[Event]]) -> None:
    _, events = week
    seen: set[UUID] = set()
    for event in events:
        cause = event.envelope.causation_id
        assert cause is None or cause in seen
        seen.add(event.envelope.event_id)


def test_the_truth_maps_every_registration_to_a_person(week: tuple[County, list[Event]]) -> None:
    county, events = week
    people = {p.key for p in county.population.people}
    registered = [e for e in events if e.envelope.event_type == "PatientRegistered"]
    assert len(registered) == len(county.truth.records)
    for event in registered:
        key = (event.envelope.source, event.envelope.patient_local_id or "")
        assert county.truth.person_of(*key) in people
    local_ids = {(e.envelope.source, e.envelope.patient_local_id) for e in registered}
    for event in events:
        if event.envelope.patient_local_id is not None:
            assert (event.envelope.source, event.envelope.patient_local_id) in local_ids


def test_the_same_person_is_registered_at_several_members(week: tuple[County, list[Event]]) -> None:
    county, _ = week
    members = defaultdict(set)
    for (source, _), record in county.truth.records.items():
        members[record.person].add(source)
    assert sum(len(m) > 1 for m in members.values()) > 100


def test_referral_flows_are_well_formed(week: tuple[County, list[Event]]) -> None:
    _, events = week
    history: dict[object, list[Event]] = defaultdict(list)
    for event in events:
        if event.family.value == "referral":
            history[event.referral_id].append(event)  # type: ignore[attr-defined]
    directions: Counter[str] = Counter()
    for steps in history.values():
        kinds = [e.envelope.event_type for e in steps]
        request = steps[0]
        assert kinds[0] == "ReferralRequested" and kinds.count("ReferralRequested") == 1
        directions[request.direction.value] += 1  # type: ignore[attr-defined]
        receiver = request.to_institution  # type: ignore[attr-defined]
        for later in steps[1:]:
            assert later.envelope.source == receiver
            assert later.envelope.correlation_id == request.referral_id  # type: ignore[attr-defined]
        answers = [k for k in kinds if k in ("ReferralAccepted", "ReferralRejected")]
        assert len(answers) <= 1
        if "ReferralPatientArrived" in kinds:
            assert kinds.index("ReferralAccepted") < kinds.index("ReferralPatientArrived")
            assert "ReferralCancelled" not in kinds and "ReferralRejected" not in kinds
        if "ReferralCompleted" in kinds:
            assert kinds.index("ReferralPatientArrived") < kinds.index("ReferralCompleted")
        if "ReferralCancelled" in kinds:
            assert kinds[-1] == "ReferralCancelled"
    assert directions["UP"] > 20 and directions["DOWN"] >= 1
    outcomes = Counter(k for steps in history.values() for k in [steps[-1].envelope.event_type])
    assert outcomes["ReferralRequested"] > 0  # some are still waiting, some overdue


def test_census_counts_the_simulated_inpatients(week: tuple[County, list[Event]]) -> None:
    _, events = week
    census = [e for e in events if e.envelope.event_type == "BedCensusReported"]
    assert all(e.envelope.patient_local_id is None for e in census)
    occupancy = sum(e.beds_occupied for e in census) / sum(e.beds_staffed for e in census)  # type: ignore[attr-defined]
    assert 0.5 < occupancy < 1.1


def test_unreferred_transfers_are_in_the_truth(week: tuple[County, list[Event]]) -> None:
    county, _ = week
    assert county.truth.transfers
    for move in county.truth.transfers:
        assert move.from_institution != move.to_institution


def test_nothing_lies_in_the_future_with_the_default_start() -> None:
    before = datetime.now(UTC)
    county, events = run(SimulationConfig(seed=2, days=2, population=2000))
    assert county.clock.end < before
    assert max(e.envelope.occurred_at for e in events) < before
    assert max(e.envelope.recorded_at for e in events) < before


def test_a_generated_consortium_simulates_against_its_own_membership() -> None:
    from simulator.consortium import generate

    membership = generate(4, townships=4, villages=12, division="439907")
    county = simulate(SimulationConfig(seed=3, days=1, population=1500, start=START), membership)
    events = list(county.events())
    assert events
    assert {e.envelope.source[:6] for e in events} == {"439907"}
    assert load_membership() != membership
