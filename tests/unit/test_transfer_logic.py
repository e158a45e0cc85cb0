"""Transfers as pure logic: the rules, and the same transfers for any arrival order."""

from __future__ import annotations

import functools
import itertools
import random
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from events.encounter import PatientAdmitted, PatientDischarged
from events.envelope import Envelope, Event
from events.membership import load_membership
from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.referral import ReferralAccepted, ReferralRequested
from examples import (
    COUNTY_HOSPITAL,
    HYPERTENSION,
    OCCURRED_AT,
    TCM_HOSPITAL,
    TOWNSHIP,
    VILLAGE,
    linked_to,
    merged_into,
    unlinked_from,
)
from examples import resident_id as make_resident_id
from projections.persons import members, resolve
from projections.referrals.lifecycle import derive as derive_referral
from projections.referrals.lifecycle import evolve as evolve_referral
from projections.transfers.persons import (
    DEVELOPMENT_KEY,
    IndexLinks,
    PersonKeyError,
    ResidentIdHash,
    person_key,
)
from projections.transfers.stays import (
    Patient,
    Transfer,
    derive_transfers,
    evolve,
    key_of,
    merge_routes,
    transfers_of,
)

HASH = ResidentIdHash(b"a test key of sixteen bytes or more")
MEMBERS = (VILLAGE, TOWNSHIP, COUNTY_HOSPITAL, TCM_HOSPITAL)
IDS = uuid.UUID("0d3c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d")


def rid(person: int) -> str:
    return make_resident_id(born=date(1950 + person, 3, 12), sequence=10 + person)


def env(kind: str, source: str, local: str, at: datetime, tag: str) -> Envelope:
    return Envelope(
        event_id=uuid.uuid5(IDS, f"{kind}|{source}|{local}|{tag}"),
        event_type=kind,
        occurred_at=at,
        recorded_at=at + timedelta(seconds=1),
        source=source,
        patient_local_id=local,
    )


def registered(source: str, local: str, person: int, with_id: bool = True) -> PatientRegistered:
    return PatientRegistered(
        envelope=env("PatientRegistered", source, local, OCCURRED_AT - timedelta(days=60), ""),
        resident_id_number=rid(person) if with_id else None,
        name="李建国",
        sex="MALE",
        birth_date=date(1950 + person, 3, 12),
    )


def id_corrected(source: str, local: str, person: int, at: datetime) -> PatientDemographicsUpdated:
    return PatientDemographicsUpdated(
        envelope=env("PatientDemographicsUpdated", source, local, at, str(person)),
        resident_id_number=rid(person),
    )


def tag_of(encounter: str, resent: int) -> str:
    return f"{encounter}#{resent}" if resent else encounter


def admitted(
    source: str, local: str, encounter: str, at: datetime, resent: int = 0
) -> PatientAdmitted:
    """An admission; `resent` > 0 is the same stay sent again with a new event id."""
    return PatientAdmitted(
        envelope=env("PatientAdmitted", source, local, at, tag_of(encounter, resent)),
        encounter_id=encounter,
        admission_type="URGENT",
        admission_source="EMERGENCY_DEPARTMENT",
        department_code="03",
        department_name="内科",
        ward_code="W1",
        admitting_diagnosis=HYPERTENSION,
        attending_clinician_id="D1",
    )


def discharged(
    source: str,
    local: str,
    encounter: str,
    at: datetime,
    disposition: str = "HOME",
    resent: int = 0,
) -> PatientDischarged:
    return PatientDischarged(
        envelope=env("PatientDischarged", source, local, at, tag_of(encounter, resent)),
        encounter_id=encounter,
        discharge_disposition=disposition,
        discharge_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
    )


def requested(
    source: str, local: str, to: str, at: datetime, referral: uuid.UUID
) -> ReferralRequested:
    return ReferralRequested(
        envelope=env("ReferralRequested", source, local, at, str(referral)),
        referral_id=referral,
        direction=direction(source, to),
        from_institution=source,
        to_institution=to,
        reason=HYPERTENSION,
        urgency="URGENT",
        requested_service="内科",
        requesting_clinician_id="D1",
    )


def direction(source: str, to: str) -> str:
    members = load_membership()
    up = members.level(to).tier - members.level(source).tier
    return "UP" if up > 0 else "DOWN" if up < 0 else "LATERAL"


def accepted(source: str, local: str, at: datetime, referral: uuid.UUID) -> ReferralAccepted:
    return ReferralAccepted(
        envelope=env("ReferralAccepted", source, local, at, str(referral)), referral_id=referral
    )


T0 = OCCURRED_AT
H3 = timedelta(hours=3)
PERSON_1 = HASH.person_of(rid(1))


def stay_at_township_then_county(gap: timedelta) -> list[Event]:
    """Person 1 discharged home from the township centre, admitted at the county hospital."""
    return [
        registered(TOWNSHIP, "t1", 1),
        registered(COUNTY_HOSPITAL, "c1", 1),
        admitted(TOWNSHIP, "t1", "E1", T0 - timedelta(days=5)),
        discharged(TOWNSHIP, "t1", "E1", T0),
        admitted(COUNTY_HOSPITAL, "c1", "E2", T0 + gap),
    ]


def test_a_discharge_then_an_admission_elsewhere_within_48_hours_is_an_unreferred_transfer() -> (
    None
):
    [transfer] = transfers_of(HASH, stay_at_township_then_county(timedelta(hours=47)))
    assert (transfer.from_institution, transfer.to_institution) == (TOWNSHIP, COUNTY_HOSPITAL)
    assert (transfer.from_patient_local_id, transfer.to_patient_local_id) == ("t1", "c1")
    assert (transfer.from_encounter_id, transfer.to_encounter_id) == ("E1", "E2")
    assert not transfer.referred and transfer.discharge_disposition == "HOME"
    assert transfer.person_id == HASH.person_of(rid(1)) and rid(1) not in transfer.person_id


def test_later_than_48_hours_or_at_the_same_member_is_no_transfer() -> None:
    assert transfers_of(HASH, stay_at_township_then_county(timedelta(hours=49))) == []
    same_member = [
        registered(TOWNSHIP, "t1", 1),
        discharged(TOWNSHIP, "t1", "E1", T0),
        admitted(TOWNSHIP, "t1", "E2", T0 + timedelta(hours=3)),
    ]
    assert transfers_of(HASH, same_member) == []


def test_the_windows_edges_hold_to_the_millisecond_whatever_offset_a_member_sends() -> None:
    """Exactly 48 h after the discharge is a transfer, a millisecond later not; 1 h before it
    (clock tolerance) is, a millisecond earlier not. A member sending +08:00 times gives the same
    transfers as one sending UTC (the contracts keep instants, in UTC)."""
    shanghai = timezone(timedelta(hours=8))
    ms = timedelta(milliseconds=1)
    edges = ((timedelta(hours=48), 1), (timedelta(hours=48) + ms, 0))
    edges += ((-timedelta(hours=1), 1), (-timedelta(hours=1) - ms, 0))
    for gap, count in edges:
        events = stay_at_township_then_county(gap)
        at_home = (T0 + gap).astimezone(shanghai)
        local_time = [*events[:-1], admitted(COUNTY_HOSPITAL, "c1", "E2", at_home)]
        assert at_home.utcoffset() == timedelta(hours=8)
        assert len(transfers_of(HASH, events)) == count
        assert transfers_of(HASH, local_time) == transfers_of(HASH, events)


def test_other_persons_and_unidentified_patients_are_no_transfer() -> None:
    other = [*stay_at_township_then_county(timedelta(hours=3))]
    other[1] = registered(COUNTY_HOSPITAL, "c1", 2)
    assert transfers_of(HASH, other) == []
    unknown = [*stay_at_township_then_county(timedelta(hours=3))]
    unknown[1] = registered(COUNTY_HOSPITAL, "c1", 1, with_id=False)
    assert transfers_of(HASH, unknown) == []
    # The admission desk corrects the registration from the id card: now it is person 1.
    corrected = [*unknown, id_corrected(COUNTY_HOSPITAL, "c1", 1, T0 + timedelta(hours=4))]
    assert len(transfers_of(HASH, corrected)) == 1


def test_a_referral_from_the_discharging_to_the_admitting_member_makes_it_referred() -> None:
    referral = uuid.uuid4()
    ask = requested(TOWNSHIP, "t1", COUNTY_HOSPITAL, T0 - timedelta(hours=2), referral)
    [transfer] = transfers_of(HASH, [*stay_at_township_then_county(timedelta(hours=5)), ask])
    assert transfer.referred and transfer.referral_id == referral
    # Seen only by the receiver (the sender's record has no resident id): still referred.
    events = stay_at_township_then_county(timedelta(hours=5))
    events[0] = registered(TOWNSHIP, "t1", 1, with_id=False)
    events += [registered(TOWNSHIP, "t9", 1, with_id=False)]
    events += [requested(TOWNSHIP, "t9", COUNTY_HOSPITAL, T0 - timedelta(hours=2), referral)]
    events += [accepted(COUNTY_HOSPITAL, "c1", T0 - timedelta(hours=1), referral)]
    events += [id_corrected(TOWNSHIP, "t1", 1, T0)]
    [seen_by_receiver] = transfers_of(HASH, events)
    assert seen_by_receiver.referral_id == referral


def test_a_referral_the_other_way_or_long_before_does_not_count() -> None:
    back = requested(COUNTY_HOSPITAL, "c1", TOWNSHIP, T0 - timedelta(hours=2), uuid.uuid4())
    old = requested(TOWNSHIP, "t1", COUNTY_HOSPITAL, T0 - timedelta(days=31), uuid.uuid4())
    [transfer] = transfers_of(HASH, [*stay_at_township_then_county(timedelta(hours=5)), back, old])
    assert not transfer.referred


def test_only_the_referrals_parties_name_it_for_a_transfer() -> None:
    """The township referred person 2 to the county; the village, no party of that referral,
    sends an event naming it under person 1's record (a mis-keyed number): person 1's township
    → county transfer is not referred by it (the board lists that event as NOT_A_PARTY)."""
    referral = uuid.uuid5(IDS, "another person's")
    events = [
        *stay_at_township_then_county(H3),
        registered(TOWNSHIP, "t2", 2),
        requested(TOWNSHIP, "t2", COUNTY_HOSPITAL, T0 - timedelta(hours=2), referral),
        registered(VILLAGE, "v1", 1),
        accepted(VILLAGE, "v1", T0 - timedelta(hours=1), referral),
    ]
    [transfer] = transfers_of(HASH, events)
    assert not transfer.referred
    # The receiver naming it for person 1 is a party: referred.
    by_receiver = [*events[:-2], accepted(COUNTY_HOSPITAL, "c1", T0 - timedelta(hours=1), referral)]
    [named] = transfers_of(HASH, by_receiver)
    assert named.referral_id == referral


def resent_request(
    to: str, at: datetime, referral: uuid.UUID, tag: int, local: str = "t1"
) -> ReferralRequested:
    """The township's request of `referral`, sent again (a correction): an event id of its own."""
    ask = requested(TOWNSHIP, local, to, at, referral)
    envelope = ask.envelope.model_copy(update={"event_id": uuid.uuid5(IDS, f"resent {tag}")})
    return ask.model_copy(update={"envelope": envelope})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from((COUNTY_HOSPITAL, TCM_HOSPITAL)),
            st.integers(-24 * 40, 0),  # requested, hours after the township discharge
            st.integers(0, 10**6),  # the event id
        ),
        min_size=2,
        max_size=3,
        unique_by=lambda r: r[2],
    )
)
@example([(COUNTY_HOSPITAL, -2, 5), (TCM_HOSPITAL, -1, 2)])
def test_a_referral_requested_twice_has_the_route_its_board_shows(
    asks: list[tuple[str, int, int]],
) -> None:
    """The referrals board takes the earliest request (by occurred_at, then event id): the
    transfer is referred by the same route, not by the request with the least event id."""
    referral = uuid.uuid5(IDS, "asked twice")
    requests = [resent_request(to, T0 + timedelta(hours=h), referral, n) for to, h, n in asks]
    board = derive_referral(
        functools.reduce(evolve_referral, requests, None), T0 + timedelta(days=1)
    )
    [transfer] = transfers_of(HASH, [*stay_at_township_then_county(H3), *requests])
    assert board.requested_at is not None
    covers = board.requested_at >= T0 + H3 - timedelta(days=30)
    assert transfer.referred == (board.to_institution == COUNTY_HOSPITAL and covers)


def test_the_key_is_refused_outside_development_unless_set() -> None:
    assert person_key({}) == DEVELOPMENT_KEY
    with pytest.raises(PersonKeyError):
        person_key({"CONSORTIUM_ENVIRONMENT": "production"})
    with pytest.raises(PersonKeyError):
        person_key(
            {
                "CONSORTIUM_ENVIRONMENT": "production",
                "TRANSFERS_PERSON_KEY": DEVELOPMENT_KEY.decode(),
            }
        )
    with pytest.raises(PersonKeyError):
        person_key({"TRANSFERS_PERSON_KEY": "short"})
    secret = "a production secret of some length"
    assert person_key({"CONSORTIUM_ENVIRONMENT": "production", "TRANSFERS_PERSON_KEY": secret}) == (
        secret.encode()
    )


def test_events_of_no_interest_have_no_key() -> None:
    from examples import example

    for kind in ("LabResultReported", "OutpatientVisitStarted", "ConsentGranted"):
        assert key_of(HASH, example(kind)) is None


def patients_of(events: list[Event]) -> list[Patient]:
    """The local patients the events make, as the store keeps them (rows in no set order)."""
    patients: dict[tuple[str, str], Patient] = {}
    for event in events:
        key = key_of(HASH, event)
        if key is not None:
            patients[key] = evolve(HASH, patients.get(key), event)
    return list(patients.values())


def by_id(transfers: list[Transfer]) -> list[Transfer]:
    return sorted(transfers, key=lambda t: t.transfer_id)


def test_a_stay_resent_under_another_local_id_counts_once_the_earliest_in_any_order() -> None:
    """After an HIS merge the county re-sends the admission of E2 under the surviving id c2."""
    township = [
        registered(TOWNSHIP, "t1", 1),
        admitted(TOWNSHIP, "t1", "E1", T0 - timedelta(days=5)),
        discharged(TOWNSHIP, "t1", "E1", T0),
    ]
    c1 = [registered(COUNTY_HOSPITAL, "c1", 1), admitted(COUNTY_HOSPITAL, "c1", "E2", T0 + H3)]
    c2 = [
        registered(COUNTY_HOSPITAL, "c2", 1),
        admitted(COUNTY_HOSPITAL, "c2", "E2", T0 + H3 + timedelta(minutes=5), resent=1),
    ]
    first = transfers_of(HASH, township + c1 + c2)
    assert transfers_of(HASH, township + c2 + c1) == first
    [transfer] = first
    assert (transfer.to_patient_local_id, transfer.admitted_at) == ("c1", T0 + H3)
    # The store reads a person's patients (rows) in any order.
    patients = patients_of(township + c1 + c2)
    for order in itertools.permutations(patients):
        assert derive_transfers(PERSON_1, order, merge_routes(order)) == first


def test_an_encounter_id_is_one_stay_at_its_member_whichever_local_id_sends_it() -> None:
    """Encounter ids are the member's stay numbers (住院流水号), not numbers per patient."""
    township = [
        registered(TOWNSHIP, "t1", 1),
        admitted(TOWNSHIP, "t1", "E1", T0 - timedelta(days=5)),
        discharged(TOWNSHIP, "t1", "E1", T0),
    ]
    county = [registered(COUNTY_HOSPITAL, "c1", 1), registered(COUNTY_HOSPITAL, "c2", 1)]
    # The county's stay "1" is the one admitted a year ago (under c1): no transfer now.
    year_ago = [
        admitted(COUNTY_HOSPITAL, "c2", "1", T0 + H3),
        admitted(COUNTY_HOSPITAL, "c1", "1", T0 - timedelta(days=400)),
    ]
    # Its stay "1" is the one admitted 3 h after the township discharge (under c1).
    just_now = [
        admitted(COUNTY_HOSPITAL, "c2", "1", T0 + timedelta(hours=4)),
        admitted(COUNTY_HOSPITAL, "c1", "1", T0 + H3),
    ]
    for stays_, want in ((year_ago, []), (just_now, [("c1", T0 + H3)])):
        events = township + county + stays_
        for order in itertools.permutations(events):
            got = transfers_of(HASH, list(order))
            assert [(t.to_patient_local_id, t.admitted_at) for t in got] == want
        patients = patients_of(events)
        for rows in itertools.permutations(patients):
            assert by_id(derive_transfers(PERSON_1, rows, merge_routes(rows))) == got


def test_a_readmission_at_the_receiving_member_is_no_second_transfer() -> None:
    """Township → county (10 h later), home from the county, back at the county 30 h after
    leaving the township: it came from the county stay, not from the township's."""
    events = [
        *stay_at_township_then_county(timedelta(hours=10)),
        discharged(COUNTY_HOSPITAL, "c1", "E2", T0 + timedelta(hours=20)),
        admitted(COUNTY_HOSPITAL, "c1", "E3", T0 + timedelta(hours=30)),
    ]
    [transfer] = transfers_of(HASH, events)
    assert (transfer.from_encounter_id, transfer.to_encounter_id) == ("E1", "E2")
    # From the county back to the township: the latest stay (the county's) is the one.
    back = [
        *events,
        discharged(COUNTY_HOSPITAL, "c1", "E3", T0 + timedelta(hours=40)),
        admitted(TOWNSHIP, "t1", "E4", T0 + timedelta(hours=50)),
    ]
    pairs = sorted((t.from_encounter_id, t.to_encounter_id) for t in transfers_of(HASH, back))
    assert pairs == [("E1", "E2"), ("E3", "E4")]


def test_the_admissions_own_stay_and_clock_tolerance_do_not_hide_the_stay_it_came_from() -> None:
    short = [
        *stay_at_township_then_county(timedelta(hours=3)),
        discharged(COUNTY_HOSPITAL, "c1", "E2", T0 + timedelta(hours=3, minutes=40)),
    ]
    [transfer] = transfers_of(HASH, short)  # discharged within the hour: still a transfer
    assert transfer.to_encounter_id == "E2"
    # The county's clock is 30 min behind: admitted "before" the township discharge.
    skewed = stay_at_township_then_county(-timedelta(minutes=30))
    assert len(transfers_of(HASH, skewed)) == 1


def test_a_discharge_is_the_transfer_of_the_first_stay_begun_after_it_only() -> None:
    """Township discharge, county admission 5 h later, TCM admission 20 h after the township:
    the patient came to the TCM hospital from the county stay (its discharge not sent yet, or
    after the TCM admission), not from the township's — one discharge, one transfer."""
    county_open = [
        *stay_at_township_then_county(timedelta(hours=5)),
        registered(TCM_HOSPITAL, "m1", 1),
        admitted(TCM_HOSPITAL, "m1", "E3", T0 + timedelta(hours=20)),
    ]
    overlapping = [*county_open, discharged(COUNTY_HOSPITAL, "c1", "E2", T0 + timedelta(hours=30))]
    chained = [*county_open, discharged(COUNTY_HOSPITAL, "c1", "E2", T0 + timedelta(hours=10))]
    # Re-admitted at the county while its first stay's discharge is missing: not T → C twice.
    readmitted = [
        *stay_at_township_then_county(timedelta(hours=5)),
        admitted(COUNTY_HOSPITAL, "c1", "E4", T0 + timedelta(hours=30)),
    ]
    for events, want in (
        (county_open, [("E1", "E2")]),
        (overlapping, [("E1", "E2")]),
        (chained, [("E1", "E2"), ("E2", "E3")]),
        (readmitted, [("E1", "E2")]),
    ):
        got = sorted((t.from_encounter_id, t.to_encounter_id) for t in transfers_of(HASH, events))
        assert got == want


# -- any arrival order --------------------------------------------------------------------

stays = st.lists(
    st.tuples(
        st.integers(0, 2),  # person
        st.sampled_from(MEMBERS),
        st.integers(0, 24 * 8),  # admitted, hours after T0
        st.integers(1, 24 * 5),  # length of stay, hours
        st.sampled_from(["HOME", "HOME", "AGAINST_ADVICE", "DECEASED"]),
    ),
    min_size=1,
    max_size=7,
)
referrals = st.lists(
    st.tuples(
        st.integers(0, 2), st.sampled_from(MEMBERS), st.sampled_from(MEMBERS), st.integers(0, 200)
    ).filter(lambda r: r[1] != r[2]),
    max_size=4,
)


def scenario(
    stays_: list[tuple[int, str, int, int, str]],
    refs: list[tuple[int, str, str, int]],
    every_id: bool = False,
) -> list[Event]:
    """Registrations (some without an id, corrected later, unless `every_id`), stays and
    referrals of 3 persons."""
    events: list[Event] = []
    for person in range(3):
        for i, member in enumerate(MEMBERS):
            local = f"{member[-3:]}-{person}"
            with_id = every_id or (person + i) % 3 != 0
            events.append(registered(member, local, person, with_id))
            if not with_id and person == 1:
                events.append(id_corrected(member, local, person, T0 + timedelta(days=3)))
    for n, (person, member, start, length, disposition) in enumerate(stays_):
        local, enc = f"{member[-3:]}-{person}", f"E{n}"
        events.append(admitted(member, local, enc, T0 + timedelta(hours=start)))
        end = T0 + timedelta(hours=start + length)
        events.append(discharged(member, local, enc, end, disposition))
    for person, src, dst, hour in refs:
        referral = uuid.uuid5(IDS, f"{person}{src}{dst}{hour}")
        at = T0 + timedelta(hours=hour)
        events.append(requested(src, f"{src[-3:]}-{person}", dst, at, referral))
        events.append(accepted(dst, f"{dst[-3:]}-{person}", at + timedelta(minutes=30), referral))
    return events


@settings(max_examples=60, deadline=None)
@given(stays, referrals, st.randoms(use_true_random=False), st.integers(0, 6))
def test_any_arrival_order_and_duplicates_give_the_same_transfers(
    stays_: list[tuple[int, str, int, int, str]],
    refs: list[tuple[int, str, str, int]],
    rng: random.Random,
    repeats: int,
) -> None:
    events = scenario(stays_, refs)
    expected = transfers_of(HASH, events)
    # Admissions and discharges come from different members, registrations may come late,
    # and hospitals retry: shuffle everything and deliver some events again.
    arrival = [*events, *(rng.choice(events) for _ in range(repeats))]
    rng.shuffle(arrival)
    assert transfers_of(HASH, arrival) == expected
    assert all(isinstance(t, Transfer) and t.from_institution != t.to_institution for t in expected)


one_persons_stays = st.lists(
    st.tuples(
        st.sampled_from(MEMBERS[:3]),  # few members: re-admissions at one member
        st.sampled_from("ab"),  # two local ids at each member
        st.integers(0, 3),  # encounter: shared by both local ids, or re-sent
        st.integers(0, 24 * 6),  # admitted, hours after T0
        st.integers(1, 48),  # length of stay, hours
        st.sampled_from(["HOME", "HOME", "DECEASED"]),
        st.booleans(),  # the discharge was sent
    ),
    min_size=1,
    max_size=8,
)


def one_person(stays_: list[tuple[str, str, int, int, int, str, bool]]) -> list[Event]:
    """Person 1 under two local ids at every member; every event has its own event id."""
    events: list[Event] = [
        registered(member, f"{member[-3:]}-{local}", 1) for member in MEMBERS[:3] for local in "ab"
    ]
    for n, (member, local, enc, start, length, disposition, sent) in enumerate(stays_):
        lid, encounter = f"{member[-3:]}-{local}", f"E{enc}"
        events.append(admitted(member, lid, encounter, T0 + timedelta(hours=start), n + 1))
        if sent:
            end = T0 + timedelta(hours=start + length)
            events.append(discharged(member, lid, encounter, end, disposition, n + 1))
    return events


@settings(max_examples=150, deadline=None)
@given(one_persons_stays, st.randoms(use_true_random=False), st.integers(0, 6))
def test_two_local_ids_sharing_encounter_ids_give_the_same_transfers_in_any_order(
    stays_: list[tuple[str, str, int, int, int, str, bool]],
    rng: random.Random,
    repeats: int,
) -> None:
    events = one_person(stays_)
    expected = transfers_of(HASH, events)
    arrival = [*events, *(rng.choice(events) for _ in range(repeats))]
    rng.shuffle(arrival)
    assert transfers_of(HASH, arrival) == expected
    patients = patients_of(arrival)  # and the store's rows in any order
    rng.shuffle(patients)
    assert by_id(derive_transfers(PERSON_1, patients, merge_routes(patients))) == expected


@settings(max_examples=300, deadline=None)
@given(one_persons_stays)
@example(  # township → county, home, back at the county (other local id) 30 h after the township
    [
        (TOWNSHIP, "a", 0, 0, 10, "HOME", True),
        (COUNTY_HOSPITAL, "a", 1, 20, 10, "HOME", True),
        (COUNTY_HOSPITAL, "b", 2, 40, 5, "HOME", False),
    ]
)
def test_a_transfer_comes_from_the_latest_discharge_before_the_admission(
    stays_: list[tuple[str, str, int, int, int, str, bool]],
) -> None:
    """No other stay of the person ended between a transfer's discharge and its admission."""
    events = one_person(stays_)
    ended: dict[tuple[str, str], tuple[datetime, uuid.UUID, str]] = {}
    for e in events:
        if isinstance(e, PatientDischarged):
            key = (e.envelope.source, e.encounter_id)  # a stay; its earliest discharge counts
            fact = (e.envelope.occurred_at, e.envelope.event_id, e.discharge_disposition.value)
            if key not in ended or fact < ended[key]:
                ended[key] = fact
    for t in transfers_of(HASH, events):
        admitted_stay = (t.to_institution, t.to_encounter_id)
        between = [
            (stay, at)
            for stay, (at, _, disposition) in ended.items()
            if stay != admitted_stay
            and disposition != "DECEASED"
            and t.discharged_at < at <= t.admitted_at + timedelta(hours=1)
        ]
        assert between == []


@settings(max_examples=300, deadline=None)
@given(one_persons_stays)
@example(  # township; the county admits 5 h later (no discharge sent); the village 20 h later
    [
        (TOWNSHIP, "a", 0, 0, 10, "HOME", True),
        (COUNTY_HOSPITAL, "a", 1, 15, 10, "HOME", False),
        (VILLAGE, "a", 2, 30, 5, "HOME", False),
    ]
)
def test_no_other_stay_began_between_a_transfers_discharge_and_its_admission(
    stays_: list[tuple[str, str, int, int, int, str, bool]],
) -> None:
    """The patient went from a discharge to the first stay begun after it: so a discharge is the
    transfer of one admission at most."""
    events = one_person(stays_)
    began: dict[tuple[str, str], tuple[datetime, uuid.UUID]] = {}
    for e in events:
        if isinstance(e, PatientAdmitted):
            key = (e.envelope.source, e.encounter_id)  # a stay; its earliest admission counts
            fact = (e.envelope.occurred_at, e.envelope.event_id)
            if key not in began or fact < began[key]:
                began[key] = fact
    transfers = transfers_of(HASH, events)
    for t in transfers:
        ends = {(t.from_institution, t.from_encounter_id), (t.to_institution, t.to_encounter_id)}
        between = [
            stay
            for stay, (at, _) in began.items()
            if stay not in ends and t.discharged_at - timedelta(hours=1) <= at < t.admitted_at
        ]
        assert between == []
    departures = [(t.from_institution, t.from_encounter_id) for t in transfers]
    assert len(departures) == len(set(departures))


def test_the_declared_event_types_cover_every_event_with_a_key() -> None:
    """The frame skips other types undecoded: none of them may matter to transfers."""
    from events.registry import EVENT_TYPES
    from examples import example
    from projections.transfers.projection import TRANSFERS

    assert TRANSFERS.event_types is not None
    for kind in EVENT_TYPES:
        event = example(kind)
        if TRANSFERS.key_of(event) is not None:
            assert kind in TRANSFERS.event_types
    assert "OutpatientVisitStarted" not in TRANSFERS.event_types


# -- the patient index's decisions (IndexLinks, the wired adapter) ---------------------------

INDEX = IndexLinks()
A, B, C = (uuid.uuid5(IDS, f"person {n}") for n in "ABC")


def township_then_county_unidentified(gap: timedelta = H3) -> list[Event]:
    """The township → county stay of one person whose records carry no resident id."""
    events = stay_at_township_then_county(gap)
    events[0] = registered(TOWNSHIP, "t1", 1, with_id=False)
    events[1] = registered(COUNTY_HOSPITAL, "c1", 1, with_id=False)
    return events


def test_the_index_finds_the_transfer_of_records_without_a_resident_id() -> None:
    events = township_then_county_unidentified()
    assert transfers_of(HASH, events) == []  # no resident id: no hash, no person
    links = [linked_to(A, TOWNSHIP, "t1"), linked_to(A, COUNTY_HOSPITAL, "c1")]
    [transfer] = transfers_of(INDEX, events + links)
    assert transfer.person_id == str(A)
    assert (transfer.from_patient_local_id, transfer.to_patient_local_id) == ("t1", "c1")
    # Registrations say nothing to IndexLinks: only the index does.
    assert transfers_of(INDEX, stay_at_township_then_county(H3)) == []


def test_a_move_reads_as_unlink_and_link_at_one_instant_in_either_order() -> None:
    """The county record was linked to B; a review moves it to A (unlink B, link A, same t)."""
    at = T0 + timedelta(days=1)
    stays_ = township_then_county_unidentified()
    before = [linked_to(A, TOWNSHIP, "t1"), linked_to(B, COUNTY_HOSPITAL, "c1", T0 - H3)]
    assert transfers_of(INDEX, stays_ + before) == []
    move = [unlinked_from(B, COUNTY_HOSPITAL, "c1", at), linked_to(A, COUNTY_HOSPITAL, "c1", at)]
    for order in itertools.permutations([*before, *move]):
        [transfer] = transfers_of(INDEX, stays_ + list(order))
        assert transfer.person_id == str(A)
    # Unlinked and not linked again: nobody's, no transfer; linked back later: B's again.
    assert transfers_of(INDEX, stays_ + before + move[:1]) == []
    back = linked_to(B, COUNTY_HOSPITAL, "c1", at + H3, tag="back")
    assert transfers_of(INDEX, stays_ + before + move + [back]) == []


def test_a_merge_gives_the_retired_persons_records_to_the_survivor_in_any_order() -> None:
    stays_ = township_then_county_unidentified()
    links = [linked_to(A, TOWNSHIP, "t1"), linked_to(B, COUNTY_HOSPITAL, "c1")]
    assert transfers_of(INDEX, stays_ + links) == []  # two persons, as far as the index knew
    merge = merged_into(A, B, T0 + timedelta(days=2))
    for order in itertools.permutations([*links, merge]):
        [transfer] = transfers_of(INDEX, stays_ + list(order))
        assert transfer.person_id == str(A)  # the survivor's; the retired B keeps none
    # Merged the other way: the survivor is B.
    [other_way] = transfers_of(INDEX, stays_ + links + [merged_into(B, A)])
    assert other_way.person_id == str(B)
    # A chain (C into B, B into A), the county record linked to C: still A's.
    chain = [
        linked_to(A, TOWNSHIP, "t1"),
        linked_to(C, COUNTY_HOSPITAL, "c1"),
        merged_into(B, C),
        merged_into(A, B, tag="2"),
    ]
    for order in itertools.permutations(chain):
        [transfer] = transfers_of(INDEX, stays_ + list(order))
        assert transfer.person_id == str(A)


def test_a_long_merge_chain_is_followed_to_its_end() -> None:
    ids = [uuid.uuid5(IDS, f"hop {n}") for n in range(100)]
    chain = [merged_into(ids[n + 1], ids[n], tag=str(n)) for n in range(len(ids) - 1)]
    stays_ = township_then_county_unidentified()
    far = [linked_to(ids[0], TOWNSHIP, "t1"), linked_to(ids[-1], COUNTY_HOSPITAL, "c1")]
    [transfer] = transfers_of(INDEX, stays_ + far + chain)
    assert transfer.person_id == str(ids[-1])


@given(st.integers(min_value=2, max_value=6), st.integers(min_value=0, max_value=5))
def test_every_id_of_a_merge_cycle_stands_for_one_person(size: int, start: int) -> None:
    """Two indexes' decisions in one log can retire persons in a circle: one person for all."""
    ids = [str(uuid.uuid5(IDS, f"cycle {n}")) for n in range(size)]
    survivors = {ids[n]: ids[(n + 1) % size] for n in range(size)}
    lead_in = str(uuid.uuid5(IDS, "into the cycle"))
    survivors[lead_in] = ids[start % size]
    targets = {resolve(survivors, p) for p in [*ids, lead_in]}
    assert targets == {min(ids)}
    assert members(survivors, ids[start % size]) == frozenset([*ids, lead_in])


def test_the_synthetic_flows_carry_the_index_decisions_and_give_the_same_transfers() -> None:
    from events.catalog import Catalog
    from events.codec import Codec
    from events.person import PersonLinked
    from projections.empi.config import lead_institution
    from projections.transfers.synthetic import transfer_flows

    events = [e for flow in transfer_flows(5, 200) for e in flow]
    decisions = [e for e in events if isinstance(e, PersonLinked)]
    registrations = [e for e in events if isinstance(e, PatientRegistered)]
    assert len(decisions) == len(registrations)
    assert {d.envelope.source for d in decisions} == {lead_institution()}
    codec = Codec(Catalog.load())
    for d in decisions:
        assert codec.decode_event(codec.encode_event(d)) == d
    by_index = transfers_of(INDEX, events)
    by_hash = transfers_of(HASH, events)
    assert len(by_index) > 50
    assert [t.transfer_id for t in by_index] == [t.transfer_id for t in by_hash]
    assert [t.referral_id for t in by_index] == [t.referral_id for t in by_hash]
    persons = {str(d.person_id) for d in decisions}
    assert {t.person_id for t in by_index} <= persons


# Per local patient, how the index came to its final person: linked to it at once; linked to
# another person first and moved (unlink + link at one instant); linked to a person the index
# later merged into it; or through a chain of two merges.
HISTORIES = ("direct", "moved", "merged", "chain")
histories = st.lists(st.sampled_from(HISTORIES), min_size=3 * len(MEMBERS), max_size=12)
decision_hours = st.lists(st.integers(-24 * 90, 24 * 10), min_size=3, max_size=3)


def final_person(person: int) -> uuid.UUID:
    return uuid.uuid5(IDS, f"final {person}")


def index_decisions(ways: list[str], hours: list[int]) -> list[Event]:
    """What the index decided about every local patient of `scenario`, ending at its person."""
    events: list[Event] = []
    for n, (person, member) in enumerate(itertools.product(range(3), MEMBERS)):
        local, way, final = f"{member[-3:]}-{person}", ways[n], final_person(person)
        first, later, merged = (T0 + timedelta(hours=h) for h in hours)
        early = uuid.uuid5(IDS, f"early {person} {member}")
        between = uuid.uuid5(IDS, f"between {person} {member}")
        if way == "direct":
            events.append(linked_to(final, member, local, first))
        elif way == "moved":
            moved_at = max(first, later)  # the move comes with or after the first link
            events += [
                linked_to(early, member, local, first),
                unlinked_from(early, member, local, moved_at),
                linked_to(final, member, local, moved_at),
            ]
        elif way == "merged":
            events += [linked_to(early, member, local, first), merged_into(final, early, merged)]
        else:
            events += [
                linked_to(early, member, local, first),
                merged_into(between, early, later),
                merged_into(final, between, merged),
            ]
    return events


@settings(max_examples=60, deadline=None)
@given(
    stays,
    referrals,
    histories,
    decision_hours,
    st.randoms(use_true_random=False),
    st.integers(0, 8),
)
def test_any_arrival_order_of_index_decisions_gives_the_same_transfers(
    stays_: list[tuple[int, str, int, int, str]],
    refs: list[tuple[int, str, str, int]],
    ways: list[str],
    hours: list[int],
    rng: random.Random,
    repeats: int,
) -> None:
    """Links, unlinks, merges, stays and referrals shuffled and some repeated: the transfers
    are those of the index linking every record to its final person at once."""
    facts = [e for e in scenario(stays_, refs) if not isinstance(e, PatientRegistered)]
    facts = [e for e in facts if not isinstance(e, PatientDemographicsUpdated)]
    expected = transfers_of(INDEX, facts + index_decisions(["direct"] * 12, hours))
    events = facts + index_decisions(ways, hours)
    arrival = [*events, *(rng.choice(events) for _ in range(repeats))]
    rng.shuffle(arrival)
    assert transfers_of(INDEX, arrival) == expected
    assert {t.person_id for t in expected} <= {str(final_person(p)) for p in range(3)}
    # Every record has an index person: the transfers are those resident ids find when every
    # record has one. (With fewer records linked a stay between may be missing, so neither side
    # need contain the other: a discharge is the transfer of the first stay begun after it.)
    with_ids = transfers_of(HASH, scenario(stays_, refs, every_id=True))
    assert {t.transfer_id for t in with_ids} == {t.transfer_id for t in expected}
