"""Synthetic persons seen at several members, for the shared record's tests.

Each story links local patients at two members to one person, orders and reports tests at one
member and orders them again at the other within the recognition window (a possible repeat,
sometimes withdrawn), admits and discharges, refers, consents (sometimes revoked), and for some
persons merges a third record's person in or moves a record to another person.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from events.consent import ConsentGranted, ConsentRevoked
from events.encounter import (
    OutpatientVisitCompleted,
    OutpatientVisitStarted,
    PatientAdmitted,
    PatientDischarged,
)
from events.envelope import Envelope, Event
from events.order import OrderCancelled, OrderPlaced
from events.person import MatchMethod, PersonLinked, PersonsMerged, PersonUnlinked, UnlinkReason
from events.referral import ReferralAccepted, ReferralCompleted, ReferralRequested
from events.result import ImagingReportIssued, LabResultReported, ResultAmended

START = datetime(2024, 5, 1, tzinfo=UTC)
COUNTY, TOWNSHIP, VILLAGE = "439901-C01", "439901-T03", "439901-V017"
HYPERTENSION = {"system": "ICD-10", "code": "I10.x00", "display": "高血压"}
CBC = {"system": "LOINC", "code": "58410-2", "display": "血常规"}
HAEMOGLOBIN = {"system": "LOINC", "code": "718-7", "display": "血红蛋白"}
CHEST_CT = {"system": "LOCAL", "code": "CT003", "display": "胸部CT平扫"}


class _Story:
    """Builds one person's events with ids drawn from the generator."""

    def __init__(self, rng: random.Random, index: int, start: datetime) -> None:
        self.rng, self.index, self.events = rng, index, list[Event]()
        self.at = start + timedelta(hours=7 * index)
        self.person = self.new_id()
        self.local = {TOWNSHIP: f"T{index:05d}", COUNTY: f"C{index:05d}", VILLAGE: f"V{index:05d}"}

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def env(self, kind: str, source: str, at: datetime, local: str | None = None) -> Envelope:
        return Envelope(
            event_id=self.new_id(),
            event_type=kind,
            occurred_at=at,
            recorded_at=at + timedelta(seconds=1),
            source=source,
            patient_local_id=local or self.local[source],
        )

    def emit(self, model: type[Event], source: str, at: datetime, **fields: Any) -> None:
        local = fields.pop("local", None)
        self.events.append(model(envelope=self.env(model.event_type, source, at, local), **fields))

    def link(self, member: str, person: uuid.UUID, at: datetime) -> None:
        self.emit(
            PersonLinked,
            COUNTY,
            at,
            local=str(person),
            person_id=person,
            institution=member,
            local_id=self.local[member],
            method=MatchMethod.RESIDENT_ID,
            score=30.0,
            agreement=(),
        )


def _tests(s: _Story, first: str, second: str) -> None:
    """A blood count and a chest CT at the first member, ordered again at the second."""
    t = s.at + timedelta(hours=1)
    s.emit(
        OrderPlaced,
        first,
        t,
        order_id=f"O{s.index}a",
        category="LAB",
        code=CBC,
        priority="ROUTINE",
        ordering_clinician_id="D1",
    )
    value = 90 + s.rng.randrange(60)
    # Some laboratories send a preliminary value first; some results are corrected twice.
    statuses = ("PRELIMINARY", "FINAL") if s.rng.random() < 0.4 else ("FINAL",)
    for n, status in enumerate(statuses):
        s.emit(
            LabResultReported,
            first,
            t + timedelta(hours=2 + n),
            result_id=f"R{s.index}a",
            order_id=f"O{s.index}a",
            status=status,
            code=HAEMOGLOBIN,
            value_string=str(value + n),
            value_numeric=float(value + n),
            unit="g/L",
            abnormal_flag="LOW" if value < 115 else "NORMAL",
            observed_at=t + timedelta(hours=1),
        )
    for n in range(s.rng.choice((0, 1, 2))):
        s.emit(
            ResultAmended,
            first,
            t + timedelta(hours=9 + n),
            result_id=f"R{s.index}a",
            kind="LAB",
            value_string=str(value + 10 + n),
            value_numeric=float(value + 10 + n),
            abnormal_flag="NORMAL" if n else None,
            reason="复测更正",
            amending_clinician_id="L1",
        )
    s.emit(
        OrderPlaced,
        first,
        t,
        order_id=f"O{s.index}b",
        category="IMAGING",
        code=CHEST_CT,
        priority="URGENT",
        ordering_clinician_id="D1",
    )
    s.emit(
        ImagingReportIssued,
        first,
        t + timedelta(hours=2),
        report_id=f"I{s.index}b",
        order_id=f"O{s.index}b",
        study_instance_uid=f"1.2.156.112605.{s.index + 1}",
        modality="CT",
        body_site="胸部",
        findings="双肺纹理清晰。",
        impression="未见异常。",
        critical_finding=False,
        reporting_clinician_id="R1",
    )
    later = t + timedelta(days=s.rng.choice((2, 5, 10)))  # 10 days: past the count's 7
    for suffix, category, code in (("c", "LAB", CBC), ("d", "IMAGING", CHEST_CT)):
        s.emit(
            OrderPlaced,
            second,
            later,
            order_id=f"O{s.index}{suffix}",
            category=category,
            code=code,
            priority="ROUTINE",
            ordering_clinician_id="D2",
        )
        if s.rng.random() < 0.4:  # the clinician saw the other member's result and withdrew
            s.emit(
                OrderCancelled,
                second,
                later + timedelta(minutes=10),
                order_id=f"O{s.index}{suffix}",
                reason="结果互认，不再重复检查",
            )


def _stay(s: _Story) -> None:
    """An outpatient visit at the township, then an admission at the county hospital."""
    t = s.at
    s.emit(
        OutpatientVisitStarted,
        TOWNSHIP,
        t,
        encounter_id=f"MZ{s.index}",
        visit_type="GENERAL",
        department_code="01",
        department_name="全科",
    )
    s.emit(
        OutpatientVisitCompleted,
        TOWNSHIP,
        t + timedelta(minutes=30),
        encounter_id=f"MZ{s.index}",
        diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        outcome="REFERRED",
    )
    rid = s.new_id()
    s.emit(
        ReferralRequested,
        TOWNSHIP,
        t + timedelta(minutes=40),
        referral_id=rid,
        direction="UP",
        from_institution=TOWNSHIP,
        to_institution=COUNTY,
        reason=HYPERTENSION,
        urgency="ROUTINE",
        requested_service="心内科",
        requesting_clinician_id="D1",
    )
    s.emit(ReferralAccepted, COUNTY, t + timedelta(hours=2), referral_id=rid)
    admitted = t + timedelta(days=1)
    s.emit(
        PatientAdmitted,
        COUNTY,
        admitted,
        encounter_id=f"ZY{s.index}",
        admission_type="ELECTIVE",
        admission_source="REFERRAL",
        department_code="03",
        department_name="心内科",
        ward_code="W3",
        admitting_diagnosis=HYPERTENSION,
        attending_clinician_id="D9",
    )
    back = s.rng.random() < 0.5
    s.emit(
        PatientDischarged,
        COUNTY,
        admitted + timedelta(days=4),
        encounter_id=f"ZY{s.index}",
        discharge_disposition="TRANSFERRED_TO_MEMBER" if back else "HOME",
        transferred_to_institution=TOWNSHIP if back else None,
        discharge_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
    )
    if s.rng.random() < 0.5:
        s.emit(
            ReferralCompleted,
            COUNTY,
            admitted + timedelta(days=4),
            referral_id=rid,
            discharge_summary="血压控制平稳。",
            final_diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
        )


def _consent(s: _Story) -> None:
    cid = s.new_id()
    named = s.rng.random() < 0.5
    s.emit(
        ConsentGranted,
        TOWNSHIP,
        s.at + timedelta(minutes=5),
        consent_id=cid,
        scope="NAMED_INSTITUTIONS" if named else "CONSORTIUM_WIDE",
        institutions=(TOWNSHIP, COUNTY) if named else (),
        purposes=("TREATMENT", "RESULT_RECOGNITION"),
        valid_from=s.at,
        expires_at=s.at + timedelta(days=30) if s.rng.random() < 0.5 else None,
    )
    if s.rng.random() < 0.3:
        s.emit(ConsentRevoked, TOWNSHIP, s.at + timedelta(days=3), consent_id=cid, reason="撤回")


def _identity(s: _Story) -> None:
    """Links; for some a merge of a village record's person, for some a record moving away."""
    s.link(TOWNSHIP, s.person, s.at - timedelta(days=1))
    s.link(COUNTY, s.person, s.at - timedelta(days=1))
    fate = s.rng.random()
    if fate < 0.3:  # the village record founded its own person; the index merged it later
        other = s.new_id()
        s.link(VILLAGE, other, s.at - timedelta(days=2))
        s.emit(
            OutpatientVisitStarted,
            VILLAGE,
            s.at - timedelta(days=2),
            encounter_id=f"V{s.index}",
            visit_type="FAMILY_DOCTOR",
            department_code="00",
            department_name="全科",
        )
        s.emit(
            PersonsMerged,
            COUNTY,
            s.at + timedelta(days=1),
            local=str(s.person),
            person_id=s.person,
            retired_person_id=other,
            method=MatchMethod.PROBABILISTIC,
            score=14.0,
        )
    elif fate < 0.45:  # the county record was someone else after all (a relative's card)
        moved, at = s.new_id(), s.at + timedelta(days=1)
        s.emit(
            PersonUnlinked,
            COUNTY,
            at,
            local=str(s.person),
            person_id=s.person,
            institution=COUNTY,
            local_id=s.local[COUNTY],
            reason=UnlinkReason.REVIEW,
            relinked_person_id=moved,
        )
        s.link(COUNTY, moved, at)


def story(rng: random.Random, index: int, start: datetime = START) -> list[Event]:
    """One person's events across members, in the order they happened."""
    s = _Story(rng, index, start)
    _identity(s)
    _stay(s)
    _consent(s)
    first, second = (TOWNSHIP, COUNTY) if rng.random() < 0.5 else (COUNTY, TOWNSHIP)
    _tests(s, first, second)
    return sorted(s.events, key=lambda e: e.envelope.occurred_at)


def stories(seed: int, count: int, start: datetime = START) -> Iterator[list[Event]]:
    """count stories, reproducible from the seed."""
    rng = random.Random(seed)
    for index in range(count):
        yield story(rng, index, start)
