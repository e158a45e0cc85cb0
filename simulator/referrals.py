"""Two-way referrals (双向转诊): requested by one member, answered and closed by another."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from events.consent import ConsentGranted
from events.referral import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralPatientArrived,
    ReferralRejected,
    ReferralRequested,
)
from simulator.clinical import Condition
from simulator.county import County, Flow
from simulator.population import Person
from simulator.sites import Site

# What becomes of a referral once requested; overdue ones are never answered.
FATES: dict[str, float] = {"accepted": 0.78, "rejected": 0.08, "cancelled": 0.05, "overdue": 0.09}
NO_SHOW_SHARE = 0.06
REFERRAL_CONSENT_SHARE = 0.6
REJECTIONS = ("床位已满，建议转诊至上级医院", "不符合转诊指征", "本院暂无相应专科")


@dataclass
class Referral:
    """One referral in flight, with what to do when the patient arrives or is not taken."""

    id: UUID
    person: Person
    sender: Site
    receiver: Site
    direction: str
    urgency: str
    condition: Condition
    flow: Flow
    # Opens the receiving encounter and returns its id; the receiver closes it later.
    on_arrival: Callable[[Referral], str]
    on_not_taken: Callable[[], None] = field(default=lambda: None)
    receiver_local_id: str = ""


def request(county: County, referral: Referral, service: str, summary: str) -> None:
    """The sender asks the receiver to take the patient; the receiver answers later."""
    sender, rng = referral.sender, county.rng
    local_id = county.local_id(sender, referral.person, referral.flow)
    county.emit(
        ReferralRequested,
        sender,
        local_id,
        referral.flow,
        referral_id=referral.id,
        direction=referral.direction,
        from_institution=sender.code,
        to_institution=referral.receiver.code,
        reason={
            "system": "ICD-10",
            "code": referral.condition.code,
            "display": referral.condition.display,
        },
        urgency=referral.urgency,
        requested_service=service,
        clinical_summary=summary,
        requesting_clinician_id=sender.clinician(rng),
    )
    if rng.random() < REFERRAL_CONSENT_SHARE:
        # The patient signs a sharing consent for the two members with the referral form.
        county.emit(
            ConsentGranted,
            sender,
            local_id,
            referral.flow,
            consent_id=county.new_uuid(),
            scope="NAMED_INSTITUTIONS",
            institutions=(sender.code, referral.receiver.code),
            purposes=("REFERRAL", "TREATMENT", "RESULT_RECOGNITION"),
            valid_from=county.clock.now,
            expires_at=county.clock.now + timedelta(days=90),
        )
    fate = rng.choices(list(FATES), list(FATES.values()))[0]
    if fate == "overdue":
        county.clock.after(timedelta(hours=24), referral.on_not_taken)
        return
    urgent = referral.urgency != "ROUTINE"
    delay = (
        timedelta(minutes=rng.uniform(10, 60)) if urgent else timedelta(hours=rng.uniform(1, 30))
    )
    county.clock.after(delay, lambda: _answer(county, referral, fate))


def _answer(county: County, referral: Referral, fate: str) -> None:
    receiver, rng = referral.receiver, county.rng
    # The receiver registers the patient from the referral form before it answers.
    referral.receiver_local_id = county.local_id(receiver, referral.person, referral.flow)
    if fate == "rejected":
        suggestion = _county_hospital(county) if receiver.kind == "township" else None
        county.emit(
            ReferralRejected,
            receiver,
            referral.receiver_local_id,
            referral.flow,
            referral_id=referral.id,
            reason=rng.choice(REJECTIONS),
            suggested_institution=suggestion,
        )
        referral.on_not_taken()
        return
    if fate == "cancelled":
        _cancel(county, referral, "REFERRING_INSTITUTION", "患者病情好转，转出方撤销转诊")
        referral.on_not_taken()
        return
    urgent = referral.urgency != "ROUTINE"
    wait = timedelta(hours=rng.uniform(0.5, 3)) if urgent else timedelta(days=rng.uniform(0.5, 3))
    county.emit(
        ReferralAccepted,
        receiver,
        referral.receiver_local_id,
        referral.flow,
        referral_id=referral.id,
        scheduled_arrival=county.clock.now + wait,
        accepted_by=receiver.clinician(rng),
    )
    late = timedelta(minutes=rng.uniform(-30, 120))
    if rng.random() < NO_SHOW_SHARE:
        county.clock.after(wait + timedelta(days=1), lambda: _no_show(county, referral))
    else:
        county.clock.after(wait + late, lambda: _arrive(county, referral))


def _no_show(county: County, referral: Referral) -> None:
    _cancel(county, referral, "PATIENT", "患者未按约定时间到院")
    referral.on_not_taken()


def _cancel(county: County, referral: Referral, by: str, reason: str) -> None:
    county.emit(
        ReferralCancelled,
        referral.receiver,
        referral.receiver_local_id,
        referral.flow,
        referral_id=referral.id,
        reason=reason,
        cancelled_by=by,
    )


def _arrive(county: County, referral: Referral) -> None:
    encounter_id = referral.on_arrival(referral)
    county.emit(
        ReferralPatientArrived,
        referral.receiver,
        referral.receiver_local_id,
        referral.flow,
        referral_id=referral.id,
        arrival_encounter_id=encounter_id,
    )


def complete(county: County, referral: Referral, diagnoses: list[dict[str, object]]) -> None:
    """The receiver closes the loop with a summary back to the sender (回转)."""
    county.emit(
        ReferralCompleted,
        referral.receiver,
        referral.receiver_local_id,
        referral.flow,
        referral_id=referral.id,
        discharge_summary=f"{referral.condition.display}，经治疗病情稳定。",
        final_diagnoses=diagnoses,
        recommendations="定期复诊，由家庭医生随访。"
        if referral.direction == "UP"
        else "继续康复治疗，出院后回上级医院复查。",
    )


def _county_hospital(county: County) -> str:
    return next(s.code for s in county.sites.values() if s.kind == "county")


def direction(sender: Site, receiver: Site) -> str:
    """UP, DOWN or LATERAL by the tiers of the two members."""
    tiers = {"village": 1, "township": 2}
    a, b = tiers.get(sender.kind, 3), tiers.get(receiver.kind, 3)
    return "UP" if b > a else "DOWN" if b < a else "LATERAL"
