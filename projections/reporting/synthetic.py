"""Synthetic stays, visits, ward census and referrals, for tests and benchmarks."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from events.encounter import (
    BedCensusReported,
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
)
from events.envelope import Envelope, Event
from projections.referrals.synthetic import referral_flow

START = datetime(2024, 5, 1, tzinfo=UTC)
HOSPITALS = ("439901-C01", "439901-S01", "439901-T03")
CLINICS = ("439901-C01", "439901-T01", "439901-T03", "439901-V017", "439901-V001")
HYPERTENSION = {"system": "ICD-10", "code": "I10.x00", "display": "高血压"}
DISPOSITIONS = ("HOME", "HOME", "HOME", "TRANSFERRED_OUTSIDE")


def _envelope(
    rng: random.Random, event_type: str, source: str, patient: str | None, at: datetime
) -> Envelope:
    return Envelope(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        event_type=event_type,
        occurred_at=at,
        recorded_at=at + timedelta(seconds=1),
        source=source,
        patient_local_id=patient,
    )


def stay(rng: random.Random, start: datetime = START) -> list[Event]:
    """An inpatient stay: an admission and (mostly) its discharge days later."""
    source = rng.choice(HOSPITALS)
    patient, encounter = f"P{rng.randrange(10**6)}", f"ZY{rng.randrange(10**8)}"
    admitted = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 2))
    events: list[Event] = [
        PatientAdmitted(
            envelope=_envelope(rng, "PatientAdmitted", source, patient, admitted),
            encounter_id=encounter,
            admission_type="ELECTIVE",
            admission_source="OUTPATIENT",
            department_code="01",
            department_name="内科",
            ward_code="W01",
            admitting_diagnosis=HYPERTENSION,
            attending_clinician_id="D001",
        )
    ]
    if rng.random() < 0.8:
        discharged = admitted + timedelta(minutes=rng.randrange(60 * 6, 60 * 24 * 6))
        events.append(
            PatientDischarged(
                envelope=_envelope(rng, "PatientDischarged", source, patient, discharged),
                encounter_id=encounter,
                discharge_disposition=rng.choice(DISPOSITIONS),
                discharge_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
            )
        )
    return events


def visit(rng: random.Random, start: datetime = START) -> list[Event]:
    """An outpatient visit: its start and its end."""
    source = rng.choice(CLINICS)
    patient, encounter = f"P{rng.randrange(10**6)}", f"MZ{rng.randrange(10**8)}"
    began = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 2))
    return [
        OutpatientVisitStarted(
            envelope=_envelope(rng, "OutpatientVisitStarted", source, patient, began),
            encounter_id=encounter,
            visit_type="GENERAL",
            department_code="01",
            department_name="全科",
        ),
        OutpatientVisitCompleted(
            envelope=_envelope(
                rng, "OutpatientVisitCompleted", source, patient, began + timedelta(minutes=20)
            ),
            encounter_id=encounter,
            diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
            outcome="HOME",
        ),
    ]


def census(rng: random.Random, start: datetime = START) -> list[Event]:
    """A ward's census report at a shift change."""
    source = rng.choice(HOSPITALS)
    at = start + timedelta(hours=rng.randrange(0, 48), minutes=rng.randrange(60))
    beds = 40 if source.endswith("C01") else 20
    return [
        BedCensusReported(
            envelope=_envelope(rng, "BedCensusReported", source, None, at),
            department_code="01",
            ward_code=f"W0{rng.randrange(1, 3)}",
            beds_staffed=beds,
            beds_occupied=rng.randrange(0, beds + 3),
        )
    ]


def flows(seed: int, count: int, start: datetime = START) -> Iterator[list[Event]]:
    """count flows of every kind, each in the order it happened, reproducible from the seed."""
    rng = random.Random(seed)
    makers = (stay, visit, visit, census)
    for _ in range(count):
        if rng.random() < 0.3:
            fate = rng.choice(("completed", "accepted", "rejected", "unanswered", "late"))
            yield referral_flow(rng, fate, start)
        else:
            yield rng.choice(makers)(rng, start)
