"""Inpatient stays: admission, orders, ward transfers, deterioration, discharge and where next."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from events.encounter import PatientAdmitted, PatientDischarged, PatientTransferredWard
from simulator import referrals
from simulator.clinical import REHABILITATION, Condition
from simulator.county import County, Flow
from simulator.population import Person
from simulator.referrals import Referral
from simulator.results import OrderContext, order_drug, order_imaging, order_lab
from simulator.sites import Site, Ward

DETERIORATION_SHARE = 0.05
DOWN_REFERRAL_SHARE = 0.6
LATERAL_SHARE = 0.2
ICU_FIRST_SHARE = 0.15
UNREFERRED_TRANSFER_SHARE = 0.03
# Median length of stay in days (county hospitals in China average about 8).
MEDIAN_STAY = {"township": 6.0, "county": 7.0, "tcm": 9.0, "maternal": 3.0}

# A transfer without referral: set by the outpatient module (it opens the new encounter).
Readmit = Callable[[County, Site, Person, Condition], None]


@dataclass
class Stay:
    """One inpatient stay in progress."""

    person: Person
    site: Site
    local_id: str
    encounter_id: str
    ward: Ward
    bed: str
    condition: Condition
    flow: Flow
    clinician: str
    referral: Referral | None = None
    ended: bool = False


def admit(
    county: County,
    site: Site,
    person: Person,
    condition: Condition,
    *,
    source: str,
    flow: Flow,
    urgent: bool,
    referral: Referral | None = None,
    readmit: Readmit,
) -> Stay:
    """Admit the person; their orders, results and discharge are scheduled from here."""
    rng = county.rng
    local_id = county.local_id(site, person, flow)
    # Insurance settlement needs the id card: the admission desk fixes the registration.
    county.correct_identity(site, person, local_id, flow)
    icu = [w for w in site.wards if w.department[0] == "ICU"]
    first = rng.choice(icu) if icu and urgent and rng.random() < ICU_FIRST_SHARE else None
    ward = first or site.ward_for(rng, condition.code)
    bed = ward.free_bed(rng)
    encounter_id = site.new_encounter_id(inpatient=True)
    clinician = site.clinician(rng, ward.department[0])
    county.emit(
        PatientAdmitted,
        site,
        local_id,
        flow,
        encounter_id=encounter_id,
        admission_type=_admission_type(condition, source, urgent),
        admission_source=source,
        department_code=ward.department[0],
        department_name=ward.department[1],
        ward_code=ward.code,
        bed_number=bed,
        admitting_diagnosis=_icd(condition),
        attending_clinician_id=clinician,
    )
    ward.patients[person.key] = bed
    county.inpatients.add(person.key)
    stay = Stay(
        person, site, local_id, encounter_id, ward, bed, condition, flow, clinician, referral
    )
    _orders(county, stay, urgent)
    if first is not None:
        county.clock.after(timedelta(days=rng.uniform(1, 3)), lambda: _step_down(county, stay))
    days = min(20.0, rng.lognormvariate(math.log(MEDIAN_STAY[site.kind]), 0.4))
    if site.kind == "township" and rng.random() < DETERIORATION_SHARE:
        county.clock.after(
            timedelta(days=rng.uniform(0.3, 2)), lambda: _refer_up(county, stay, readmit)
        )
    county.clock.after(timedelta(days=days), lambda: _leave(county, stay, readmit))
    return stay


def _orders(county: County, stay: Stay, urgent: bool) -> None:
    ctx = OrderContext(stay.site, stay.local_id, stay.encounter_id, stay.flow, stay.clinician, True)
    priority = "STAT" if urgent else "ROUTINE"
    for panel in stay.condition.labs:
        order_lab(county, ctx, panel, priority)
    if stay.condition.imaging:
        order_imaging(county, ctx, stay.condition.imaging, "URGENT" if urgent else "ROUTINE")
    for _ in range(county.rng.randint(1, 3)):
        order_drug(county, ctx)
    if stay.condition.labs:
        # Follow-up bloods on the ward round a few days in.
        repeat = stay.condition.labs[0]
        county.clock.after(
            timedelta(days=county.rng.uniform(2, 3)),
            lambda: None if stay.ended else order_lab(county, ctx, repeat, "ROUTINE"),
        )


def _step_down(county: County, stay: Stay) -> None:
    if stay.ended:
        return
    target = stay.site.ward_for(county.rng, stay.condition.code)
    if target is stay.ward:
        return
    bed = target.free_bed(county.rng)
    county.emit(
        PatientTransferredWard,
        stay.site,
        stay.local_id,
        stay.flow,
        encounter_id=stay.encounter_id,
        from_ward_code=stay.ward.code,
        from_bed_number=stay.bed,
        to_department_code=target.department[0],
        to_department_name=target.department[1],
        to_ward_code=target.code,
        to_bed_number=bed,
    )
    stay.ward.patients.pop(stay.person.key, None)
    stay.ward, stay.bed = target, bed
    target.patients[stay.person.key] = bed


def _leave(county: County, stay: Stay, readmit: Readmit) -> None:
    """At the planned end of the stay: home, or down to the township for rehabilitation."""
    if stay.ended:
        return
    rng = county.rng
    home = county.township_site(stay.person)
    tcm = [s for s in county.sites.values() if s.kind == "tcm" and s.wards]
    if (
        stay.site.kind == "county"
        and stay.condition.code in REHABILITATION
        and rng.random() < DOWN_REFERRAL_SHARE
    ):
        # Rehabilitation near home (下转), or at the TCM hospital's rehabilitation ward.
        receiver = rng.choice(tcm) if tcm and rng.random() < LATERAL_SHARE else home
        if receiver.wards:
            referral = _referral(county, stay, receiver, "ROUTINE", readmit)
            referral.on_not_taken = lambda: discharge(county, stay, readmit)
            summary = f"{stay.condition.display}，病情稳定，转康复治疗。"
            referrals.request(county, referral, "康复治疗", summary)
            return
    discharge(county, stay, readmit)


def _refer_up(county: County, stay: Stay, readmit: Readmit) -> None:
    if stay.ended:
        return
    hospital = next(s for s in county.sites.values() if s.kind == "county")
    referral = _referral(county, stay, hospital, "URGENT", readmit)
    referrals.request(county, referral, "上级医院住院治疗", f"{stay.condition.display}，病情加重。")


def _referral(
    county: County, stay: Stay, receiver: Site, urgency: str, readmit: Readmit
) -> Referral:
    def arrive(referral: Referral) -> str:
        # The sender discharges the patient into the receiver's care, then the receiver admits.
        discharge(county, stay, readmit, to=receiver)
        flow = Flow(county.new_uuid(), referral.flow.last)
        taken = admit(
            county,
            receiver,
            stay.person,
            stay.condition,
            source="REFERRAL",
            flow=flow,
            urgent=urgency != "ROUTINE",
            referral=referral,
            readmit=readmit,
        )
        return taken.encounter_id

    referral_id = county.new_uuid()
    return Referral(
        id=referral_id,
        person=stay.person,
        sender=stay.site,
        receiver=receiver,
        direction=referrals.direction(stay.site, receiver),
        urgency=urgency,
        condition=stay.condition,
        flow=Flow(referral_id, stay.flow.last),
        on_arrival=arrive,
    )


def discharge(county: County, stay: Stay, readmit: Readmit, to: Site | None = None) -> None:
    """The patient leaves the ward; a referred stay closes its referral."""
    if stay.ended:
        return
    rng = county.rng
    if to is not None:
        disposition = "TRANSFERRED_TO_MEMBER"
    else:
        disposition = rng.choices(
            ("HOME", "AGAINST_ADVICE", "TRANSFERRED_OUTSIDE", "DECEASED"), (93, 4, 2.5, 0.5)
        )[0]
    diagnoses: list[dict[str, object]] = [{"code": _icd(stay.condition), "role": "PRINCIPAL"}]
    county.emit(
        PatientDischarged,
        stay.site,
        stay.local_id,
        stay.flow,
        encounter_id=stay.encounter_id,
        discharge_disposition=disposition,
        transferred_to_institution=to.code if to else None,
        discharge_diagnoses=diagnoses,
        attending_clinician_id=stay.clinician,
    )
    stay.ended = True
    stay.ward.patients.pop(stay.person.key, None)
    county.inpatients.discard(stay.person.key)
    if stay.referral is not None:
        referrals.complete(county, stay.referral, diagnoses)
    if disposition in ("HOME", "AGAINST_ADVICE") and rng.random() < UNREFERRED_TRANSFER_SHARE:
        # Back within two days at another member, with no referral (未经转诊的转院).
        home = county.township_site(stay.person)
        hospital = next(s for s in county.sites.values() if s.kind == "county")
        back_home = stay.site.kind != "township" and home.wards and stay.site is hospital
        target = home if back_home else hospital
        delay = timedelta(hours=rng.uniform(6, 48))
        county.truth.transfer(stay.person.key, stay.site.code, target.code, county.clock.now)
        county.clock.after(delay, lambda: readmit(county, target, stay.person, stay.condition))


def _admission_type(condition: Condition, source: str, urgent: bool) -> str:
    if condition.code.startswith("O8"):
        return "URGENT"
    if source == "EMERGENCY_DEPARTMENT":
        return "EMERGENCY"
    return "URGENT" if urgent else "ELECTIVE"


def _icd(condition: Condition) -> dict[str, str]:
    return {"system": "ICD-10", "code": condition.code, "display": condition.display}
