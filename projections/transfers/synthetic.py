"""Synthetic stays of persons moving between members, referred or not, for tests and benchmarks.

Each flow carries the patient index's decisions about its registrations, as the index publishes
them (projections/empi/decisions.py: published by the lead hospital, ids derived from the
registration): the first record founds the person, a second record with the resident id is
linked by it, one without (the `unreferred_late_id` fate) by a probabilistic match.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from events.encounter import PatientAdmitted, PatientDischarged
from events.envelope import Envelope, Event
from events.membership import InstitutionLevel, load_membership
from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.person import MatchMethod, PersonLinked
from events.referral import ReferralAccepted, ReferralRequested
from events.validation import resident_id_check_char
from projections.empi.config import lead_institution
from projections.empi.decisions import Decisions
from projections.empi.matcher import WEIGHTS, Comparison
from projections.referrals.synthetic import HYPERTENSION, ROUTES, START
from simulator.names import given_name, surname

# How a flow's second admission relates to its discharge.
FATES = ("referred", "unreferred", "unreferred_late_id", "too_late", "same_member")
# The person the index assigns to a flow's resident (one per resident id, so a reproducible id).
PERSON_IDS = uuid.UUID("1f7d9c3a-6b2e-4a8d-9c5f-0e1d2c3b4a59")
DECISION_IDS = uuid.UUID("8c2e4f6a-1b3d-4e5f-9a7c-2d4b6e8f0a13")
# What the matcher's cells say for a flow's second record: the same name, birth date and address
# (and a resident id when the record has one).
_PROBABLE = ("name.exact", "birth.exact", "address.exact")
_BY_ID = ("id.agree", *_PROBABLE)


def linked(
    registration: PatientRegistered, person_id: uuid.UUID, matched: PatientRegistered | None
) -> PersonLinked:
    """The index's link of a registration: a new person, by resident id, or probabilistic."""
    env = registration.envelope
    cells: tuple[str, ...]
    if matched is None:
        method, cells = MatchMethod.NEW_PERSON, ()
    elif registration.resident_id_number is not None:
        method, cells = MatchMethod.RESIDENT_ID, _BY_ID
    else:
        method, cells = MatchMethod.PROBABILISTIC, _PROBABLE
    comparison = Comparison(sum(WEIGHTS[c] for c in cells), cells, None, False)
    decisions = Decisions(registration, lead_institution())
    decisions.add(
        PersonLinked,
        person_id,
        institution=env.source,
        local_id=env.patient_local_id,
        method=method,
        score=comparison.score,
        matched_institution=matched.envelope.source if matched else None,
        matched_local_id=matched.envelope.patient_local_id if matched else None,
        agreement=comparison.agreement(),
    )
    [decision] = decisions.events
    data = decision.model_dump()
    # An id of its own: Decisions gives the id the real index gives its decision about the same
    # registration, which names another person (its own person ids) — one id, two events, where
    # the bench runs both on one log.
    data["envelope"]["event_id"] = uuid.uuid5(DECISION_IDS, str(env.event_id))
    # Decisions builds without validation (the index's speed); a test fixture is checked.
    return PersonLinked.model_validate(data)


def _resident_id(rng: random.Random) -> tuple[str, date, bool]:
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
    male = rng.random() < 0.5
    first17 = (
        f"439901{born:%Y%m%d}{rng.randrange(100):02d}{rng.choice('13579' if male else '02468')}"
    )
    return first17 + resident_id_check_char(first17), born, male


def _home_township(origin: str, target: str) -> str:
    """Where the person lives: the township of the route's member below the county level."""
    membership = load_membership()
    local = [m for m in (origin, target) if membership.level(m) != InstitutionLevel.COUNTY_HOSPITAL]
    return membership[(local or [origin])[0]].township_division_code


def transfer_flow(rng: random.Random, fate: str, start: datetime = START) -> list[Event]:
    """One person's registrations at two members, a stay at the first and an admission next."""
    origin, target, direction = rng.choice(ROUTES)
    if fate == "same_member":
        target = origin
    resident_id, born, male = _resident_id(rng)
    locals_ = {origin: f"A{rng.getrandbits(40):x}", target: f"B{rng.getrandbits(40):x}"}
    sex = "MALE" if male else "FEMALE"
    name = surname(rng) + given_name(rng, sex[0], born.year)  # the names table says M or F
    home = _home_township(origin, target)

    def env(kind: str, source: str, at: datetime) -> Envelope:
        return Envelope(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            event_type=kind,
            occurred_at=at,
            recorded_at=at + timedelta(seconds=2),
            source=source,
            patient_local_id=locals_[source],
        )

    def registered(source: str, with_id: bool) -> PatientRegistered:
        return PatientRegistered(
            envelope=env("PatientRegistered", source, start - timedelta(days=30)),
            resident_id_number=resident_id if with_id else None,
            name=name,
            sex=sex,
            birth_date=born,
            township_division_code=home,
        )

    def admitted(source: str, at: datetime) -> PatientAdmitted:
        return PatientAdmitted(
            envelope=env("PatientAdmitted", source, at),
            encounter_id=f"ZY{rng.getrandbits(40):x}",
            admission_type="URGENT",
            admission_source="REFERRAL" if fate == "referred" else "EMERGENCY_DEPARTMENT",
            department_code="03",
            department_name="内科",
            ward_code="W1",
            admitting_diagnosis=HYPERTENSION,
            attending_clinician_id="D1",
        )

    admitted_at = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
    discharged_at = admitted_at + timedelta(hours=rng.randrange(24, 24 * 10))
    gap = timedelta(hours=rng.randrange(49, 24 * 5) if fate == "too_late" else rng.randrange(1, 48))
    first = admitted(origin, admitted_at)
    person = uuid.uuid5(PERSON_IDS, resident_id)
    founding = registered(origin, True)
    events: list[Event] = [founding, linked(founding, person, None), first]
    if target != origin:
        second = registered(target, fate != "unreferred_late_id")
        events += [second, linked(second, person, founding)]
    events.append(
        PatientDischarged(
            envelope=env("PatientDischarged", origin, discharged_at),
            encounter_id=first.encounter_id,
            discharge_disposition="HOME",
            discharge_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        )
    )
    events.append(admitted(target, discharged_at + gap))
    if fate == "unreferred_late_id":  # the admission desk records the id card on admission
        events.append(
            PatientDemographicsUpdated(
                envelope=env("PatientDemographicsUpdated", target, discharged_at + gap),
                resident_id_number=resident_id,
            )
        )
    if fate == "referred":
        referral_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        asked = discharged_at - timedelta(hours=2)
        events.append(
            ReferralRequested(
                envelope=env("ReferralRequested", origin, asked),
                referral_id=referral_id,
                direction=direction,
                from_institution=origin,
                to_institution=target,
                reason=HYPERTENSION,
                urgency="URGENT",
                requested_service="内科",
                requesting_clinician_id="D1",
            )
        )
        events.append(
            ReferralAccepted(
                envelope=env("ReferralAccepted", target, asked + timedelta(minutes=30)),
                referral_id=referral_id,
            )
        )
    return events


def transfer_flows(seed: int, count: int, start: datetime = START) -> Iterator[list[Event]]:
    """count flows with fates drawn at random, reproducible from the seed."""
    rng = random.Random(seed)
    for _ in range(count):
        yield transfer_flow(rng, rng.choice(FATES), start)
