"""Synthetic referral flows (all fates, any urgency) for tests and benchmarks."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from events.envelope import Envelope, Event
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)

START = datetime(2024, 5, 1, tzinfo=UTC)
# (from, to, direction): members of the bundled county whose levels fit the direction.
ROUTES = (
    ("439901-V017", "439901-T03", "UP"),
    ("439901-T03", "439901-C01", "UP"),
    ("439901-C01", "439901-T03", "DOWN"),
)
FATES = ("completed", "arrived", "accepted", "rejected", "cancelled", "unanswered", "late")
URGENCIES = ("ROUTINE", "URGENT", "EMERGENCY")
HYPERTENSION = {"system": "ICD-10", "code": "I10.x00", "display": "高血压"}


def _envelope(
    rng: random.Random, event_type: str, source: str, patient: str, at: datetime, flow: uuid.UUID
) -> Envelope:
    return Envelope(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        event_type=event_type,
        occurred_at=at,
        recorded_at=at + timedelta(seconds=1),
        source=source,
        patient_local_id=patient,
        correlation_id=flow,
    )


def referral_flow(rng: random.Random, fate: str, start: datetime = START) -> list[Event]:
    """One referral's events in the order they happened, ending in the given fate."""
    rid = uuid.UUID(int=rng.getrandbits(128), version=4)
    sender, receiver, direction = rng.choice(ROUTES)
    urgency = rng.choice(URGENCIES)
    at = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 3))
    sender_patient, receiver_patient = f"S{rng.randrange(10**6)}", f"R{rng.randrange(10**6)}"

    def env(event_type: str, when: datetime, by_receiver: bool = True) -> Envelope:
        source, patient = (receiver, receiver_patient) if by_receiver else (sender, sender_patient)
        return _envelope(rng, event_type, source, patient, when, rid)

    events: list[Event] = [
        ReferralRequested(
            envelope=env("ReferralRequested", at, by_receiver=False),
            referral_id=rid,
            direction=direction,
            from_institution=sender,
            to_institution=receiver,
            reason=HYPERTENSION,
            urgency=urgency,
            requested_service="全科门诊",
            requesting_clinician_id="D001",
        )
    ]
    if fate == "unanswered":
        return events
    answer = at + timedelta(minutes=rng.randrange(5, 90 if fate != "late" else 60 * 100))
    if fate == "rejected":
        events.append(
            ReferralRejected(
                envelope=env("ReferralRejected", answer), referral_id=rid, reason="无床位"
            )
        )
        return events
    if fate == "cancelled":
        cancelled = ReferralCancelled(
            envelope=env("ReferralCancelled", answer, by_receiver=False),
            referral_id=rid,
            reason="patient chose to stay home",
            cancelled_by="PATIENT",
        )
        return [*events, cancelled]
    events.append(ReferralAccepted(envelope=env("ReferralAccepted", answer), referral_id=rid))
    if fate in ("accepted", "late"):
        return events
    arrived = answer + timedelta(hours=rng.randrange(1, 24))
    events.append(
        ReferralPatientArrived(
            envelope=env("ReferralPatientArrived", arrived),
            referral_id=rid,
            arrival_encounter_id=f"E{rng.randrange(10**6)}",
        )
    )
    if fate == "arrived":
        return events
    events.append(
        ReferralCompleted(
            envelope=env("ReferralCompleted", arrived + timedelta(days=rng.randrange(1, 6))),
            referral_id=rid,
            discharge_summary="病情平稳",
            final_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        )
    )
    return events


def referral_flows(seed: int, count: int, start: datetime = START) -> Iterator[list[Event]]:
    """count referral flows with fates drawn at random, reproducible from the seed."""
    rng = random.Random(seed)
    for _ in range(count):
        yield referral_flow(rng, rng.choice(FATES), start)
