"""Care flows of a day: who comes to which member, what they are seen for, and where they go."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from events.consent import ConsentGranted, ConsentRevoked
from events.encounter import OutpatientVisitCompleted, OutpatientVisitStarted
from simulator import inpatient, referrals
from simulator.clinical import ADMISSION, OUTPATIENT, REFER_UP, Condition, draw
from simulator.clock import local, local_midnight
from simulator.county import County, Flow
from simulator.population import Person
from simulator.referrals import Referral
from simulator.results import OrderContext, order_drug, order_imaging, order_lab
from simulator.sites import Site

# Visits and admissions per resident per year at each kind of member (a rural county with
# about 7 outpatient visits and 0.2 admissions per resident a year, as national statistics).
VISITS_PER_YEAR = {"village": 2.5, "township": 2.0, "county": 1.7, "tcm": 0.5, "maternal": 0.3}
ADMISSIONS_PER_YEAR = {"township": 0.07, "county": 0.10, "tcm": 0.025, "maternal": 0.02}
LAB_SHARE = {"village_clinic": 0.0, "township_centre": 0.35, "hospital": 0.5}
IMAGING_SHARE = {"village_clinic": 0.0, "township_centre": 0.15, "hospital": 0.35}
REFERRED_SHARE = {"village": 0.02, "township": 0.02}
EMERGENCY_SHARE = 0.4
CONSENT_SHARE = 0.2
REVOKED_SHARE = 0.05
CHRONIC = frozenset({"I10", "E11.900", "I25.100", "J44.900", "J44.100", "I50.900", "M17.900"})
ELDERLY = frozenset({"I63.900", "I61.900", "I21.900", "S72.000"})


def start(county: County) -> None:
    """Schedule every simulated day's arrivals."""
    catchments = {code: _catchment(county, site) for code, site in county.sites.items()}
    day = local_midnight(local(county.clock.start).date())
    while day < county.clock.end:
        county.clock.at(day, partial(_plan_day, county, day, catchments))
        day += timedelta(days=1)


def _plan_day(county: County, day: datetime, catchments: dict[str, _Catchment]) -> None:
    rng = county.rng
    weekend = local(day).weekday() >= 5
    total = len(county.population.people)
    for code, site in county.sites.items():
        people, cumulative = catchments[code]
        if not people:
            continue
        base = len(people) if site.kind in ("village", "township") else total
        warming = day < county.period_start
        visits = VISITS_PER_YEAR[site.kind] * base / 365 * (0.6 if weekend else 1.1) * (not warming)
        for _ in range(_poisson(county, visits)):
            person = rng.choices(people, cum_weights=cumulative)[0]
            when = day + _opening_hour(county, site)
            if when >= county.clock.now:
                county.clock.at(when, partial(visit, county, site, person))
        admissions = ADMISSIONS_PER_YEAR.get(site.kind, 0.0) * base / 365
        for _ in range(_poisson(county, admissions)):
            person = rng.choices(people, cum_weights=cumulative)[0]
            emergency = rng.random() < EMERGENCY_SHARE
            hour = timedelta(hours=rng.uniform(0, 24)) if emergency else _opening_hour(county, site)
            if day + hour >= county.clock.now:
                county.clock.at(day + hour, partial(_to_admission, county, site, person, emergency))


def visit(
    county: County,
    site: Site,
    person: Person,
    condition: Condition | None = None,
    *,
    admit_as: str | None = None,
    referral: Referral | None = None,
    flow: Flow | None = None,
) -> str:
    """An outpatient visit from start to completion; returns its encounter id."""
    rng = county.rng
    if person.key in county.inpatients and referral is None:
        return ""
    flow = flow or county.flow()
    new_here = person.key not in site.local_ids
    local_id = county.local_id(site, person, flow)
    if new_here and site.kind != "village" and rng.random() < CONSENT_SHARE:
        _grant_consent(county, site, person, local_id, flow)
    level = site.clinical_level
    condition = condition or _condition(county, person, OUTPATIENT[level])
    encounter_id = site.new_encounter_id(inpatient=False)
    department = rng.choice(site.outpatient_departments())
    clinician = site.clinician(rng, department[0])
    emergency = admit_as == "EMERGENCY_DEPARTMENT"
    county.emit(
        OutpatientVisitStarted,
        site,
        local_id,
        flow,
        encounter_id=encounter_id,
        visit_type=_visit_type(county, site, condition, emergency, referral),
        department_code="JZK" if emergency and site.kind == "county" else department[0],
        department_name="急诊科" if emergency and site.kind == "county" else department[1],
        clinician_id=clinician,
        chief_complaint=f"{condition.display}相关症状就诊",
    )
    ctx = OrderContext(site, local_id, encounter_id, flow, clinician, ill=True)
    duration = timedelta(minutes=rng.uniform(8, 25))
    if condition.labs and rng.random() < LAB_SHARE[level]:
        for panel in condition.labs:
            order_lab(county, ctx, panel, "STAT" if emergency else "ROUTINE")
        duration = timedelta(hours=rng.uniform(1.5, 3))
    if condition.imaging and rng.random() < IMAGING_SHARE[level]:
        order_imaging(county, ctx, condition.imaging, "URGENT" if emergency else "ROUTINE")
        duration = max(duration, timedelta(hours=rng.uniform(1, 3)))
    if condition.code in CHRONIC or (site.kind == "village" and rng.random() < 0.5):
        order_drug(county, ctx)
    outcome = _outcome(county, site, condition, admit_as, referral)
    county.clock.after(
        duration,
        lambda: _complete(
            county,
            site,
            person,
            local_id,
            encounter_id,
            flow,
            condition,
            outcome,
            admit_as,
            referral,
        ),
    )
    return encounter_id


def _complete(
    county: County,
    site: Site,
    person: Person,
    local_id: str,
    encounter_id: str,
    flow: Flow,
    condition: Condition,
    outcome: str,
    admit_as: str | None,
    referral: Referral | None,
) -> None:
    diagnoses: list[dict[str, object]] = [{"code": _icd(condition), "role": "PRINCIPAL"}]
    county.emit(
        OutpatientVisitCompleted,
        site,
        local_id,
        flow,
        encounter_id=encounter_id,
        diagnoses=diagnoses,
        outcome=outcome,
    )
    if referral is not None:
        referrals.complete(county, referral, diagnoses)
    if outcome == "ADMITTED" and person.key not in county.inpatients:
        county.clock.after(
            timedelta(minutes=county.rng.uniform(10, 60)),
            lambda: _admit(county, site, person, condition, admit_as or "OUTPATIENT", flow),
        )
    elif outcome == "REFERRED":
        _refer_up(county, site, person, condition, flow)


def _outcome(
    county: County,
    site: Site,
    condition: Condition,
    admit_as: str | None,
    referral: Referral | None,
) -> str:
    if admit_as is not None:
        return "ADMITTED"
    if site.kind not in REFERRED_SHARE or referral is not None:
        return "HOME"
    if condition.code in REFER_UP or county.rng.random() < REFERRED_SHARE[site.kind]:
        return "REFERRED"
    return "HOME"


def _refer_up(
    county: County, sender: Site, person: Person, condition: Condition, flow: Flow
) -> None:
    """Send the patient to the township centre, or from there to the county hospital."""
    receiver = (
        county.township_site(person)
        if sender.kind == "village" and county.rng.random() < 0.8
        else next(s for s in county.sites.values() if s.kind == "county")
    )
    urgent = condition.code in REFER_UP
    referral_id = county.new_uuid()

    def arrive(referral: Referral) -> str:
        arrival = Flow(county.new_uuid(), referral.flow.last)
        if receiver.wards and (urgent or county.rng.random() < 0.3):
            stay = _admit(county, receiver, person, condition, "REFERRAL", arrival, referral)
            return stay.encounter_id
        return visit(county, receiver, person, condition, referral=referral, flow=arrival)

    referral = Referral(
        id=referral_id,
        person=person,
        sender=sender,
        receiver=receiver,
        direction=referrals.direction(sender, receiver),
        urgency="URGENT" if urgent else "ROUTINE",
        condition=condition,
        flow=Flow(referral_id, flow.last),
        on_arrival=arrive,
    )
    referrals.request(county, referral, "上级医院诊治", f"{condition.display}，需进一步诊治。")


def _to_admission(county: County, site: Site, person: Person, emergency: bool) -> None:
    condition = _condition(county, person, ADMISSION[site.clinical_level])
    visit(
        county,
        site,
        person,
        condition,
        admit_as="EMERGENCY_DEPARTMENT" if emergency else "OUTPATIENT",
    )


def _admit(
    county: County,
    site: Site,
    person: Person,
    condition: Condition,
    source: str,
    flow: Flow,
    referral: Referral | None = None,
) -> inpatient.Stay:
    return inpatient.admit(
        county,
        site,
        person,
        condition,
        source=source,
        flow=flow,
        urgent=source == "EMERGENCY_DEPARTMENT" or condition.code in REFER_UP,
        referral=referral,
        readmit=_readmit,
    )


def _readmit(county: County, site: Site, person: Person, condition: Condition) -> None:
    """Admitted through the emergency department of another member, with no referral."""
    visit(county, site, person, condition, admit_as="EMERGENCY_DEPARTMENT")


def _grant_consent(county: County, site: Site, person: Person, local_id: str, flow: Flow) -> None:
    rng = county.rng
    consent_id = county.new_uuid()
    institutions: tuple[str, ...] = ()
    if rng.random() < 0.6:
        scope = "CONSORTIUM_WIDE"
    else:
        hospital = next(s.code for s in county.sites.values() if s.kind == "county")
        named = dict.fromkeys((site.code, county.township_site(person).code, hospital))
        scope, institutions = "NAMED_INSTITUTIONS", tuple(named)
    extra = rng.sample(("REFERRAL", "CARE_COORDINATION"), rng.randint(0, 2))
    county.emit(
        ConsentGranted,
        site,
        local_id,
        flow,
        consent_id=consent_id,
        scope=scope,
        institutions=institutions,
        purposes=("TREATMENT", "RESULT_RECOGNITION", *extra),
        valid_from=county.clock.now,
        expires_at=None,
    )
    if rng.random() < REVOKED_SHARE:
        revoke = Flow(flow.correlation, flow.last)
        county.clock.after(
            timedelta(days=rng.uniform(0.5, 5)),
            lambda: county.emit(
                ConsentRevoked,
                site,
                local_id,
                revoke,
                consent_id=consent_id,
                reason="患者本人要求撤回授权",
            ),
        )


_Catchment = tuple[list[Person], list[float]]


def _catchment(county: County, site: Site) -> _Catchment:
    """Who comes to a member, weighted by how often people of their age need care."""
    people: Sequence[Person]
    if site.kind == "village":
        people = [p for p in county.population.people if county.village_clinic(p) is site]
    elif site.kind == "township":
        people = [p for p in county.population.people if county.township_site(p) is site]
    elif site.kind == "maternal":
        people = [
            p
            for p in county.population.people
            if _age(county, p) < 14 or (p.sex == "F" and 18 <= _age(county, p) < 50)
        ]
    else:
        people = county.population.people
    weights = [_propensity(_age(county, p)) for p in people]
    return list(people), list(itertools.accumulate(weights))


def _propensity(age: int) -> float:
    # Small children and the elderly see doctors most (national health service survey).
    if age < 5:
        return 2.5
    if age < 15:
        return 1.0
    if age < 45:
        return 0.6
    if age < 60:
        return 1.0
    return 2.0 if age < 75 else 2.5


def _condition(
    county: County, person: Person, table: tuple[tuple[Condition, float], ...]
) -> Condition:
    for _ in range(20):
        condition = draw(county.rng, table)
        if _fits(county, person, condition):
            return condition
    return Condition("J06.900", "急性上呼吸道感染", ("CBC",))


def _fits(county: County, person: Person, condition: Condition) -> bool:
    age = _age(county, person)
    if condition.code.startswith("O"):
        return person.sex == "F" and 18 <= age < 46
    if condition.code in ELDERLY:
        return age >= 50
    if condition.code in CHRONIC or condition.code.startswith(("K80", "M5", "R07")):
        return age >= 35
    return True


def _visit_type(
    county: County, site: Site, condition: Condition, emergency: bool, referral: Referral | None
) -> str:
    if emergency:
        return "EMERGENCY"
    if referral is not None:
        return "SPECIALIST"
    if condition.code in CHRONIC:
        # Village doctors follow up chronic patients as contracted family doctors (家庭医生签约).
        return "FAMILY_DOCTOR" if site.kind == "village" else "FOLLOW_UP"
    return "GENERAL" if site.kind in ("village", "township") else "SPECIALIST"


def _opening_hour(county: County, site: Site) -> timedelta:
    """Local time of day of an outpatient arrival: mostly mornings, some afternoons."""
    rng = county.rng
    if site.kind != "village" and rng.random() < 0.06:
        return timedelta(hours=rng.uniform(18, 23.9))
    if rng.random() < 0.62:
        return timedelta(hours=rng.uniform(8, 11.5))
    return timedelta(hours=rng.uniform(14, 17.5))


def _poisson(county: County, mean: float) -> int:
    # Normal approximation above 30; Knuth's product method below (exact and cheap there).
    rng = county.rng
    if mean > 30:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit, product, count = pow(2.718281828459045, -mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _age(county: County, person: Person) -> int:
    return (county.population.as_of - person.birth_date).days // 365


def _icd(condition: Condition) -> dict[str, str]:
    return {"system": "ICD-10", "code": condition.code, "display": condition.display}
