"""Reporting figures against an oracle written here from the events alone (not the ledger's
cells): admissions, discharges, length of stay, referrals by direction, acceptance rate and the
minutes to acceptance of each consortium day, wherever the figure is published."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from datetime import date
from typing import Any

from events.envelope import Event
from events.referral import ReferralAccepted, ReferralRejected, ReferralRequested
from projections.referrals.synthetic import referral_flow
from projections.reporting.figures import P90_THRESHOLD, ScopeKind
from projections.reporting.ledger import Ledger
from projections.reporting.synthetic import stay
from projections.reporting.windows import Grain, local_date


def _days(ledger: Ledger) -> dict[date, dict[str, Any]]:
    return {
        local_date(k.window_start): r
        for k, r in ledger.figures.items()
        if k.kind is ScopeKind.CONSORTIUM and k.grain is Grain.DAY
    }


def _published(record: dict[str, Any], field: str) -> Any:
    figure = record[field]
    return None if figure is None or figure["suppressed"] else figure["value"]


def test_stays_admissions_discharges_and_length_of_stay_match_the_events() -> None:
    rng = random.Random(21)
    events = [e for _ in range(120) for e in stay(rng)]
    ledger = Ledger("c1")
    ledger.apply(events)
    admitted: dict[str, Event] = {}
    admissions: dict[date, int] = defaultdict(int)
    discharges: dict[date, int] = defaultdict(int)
    minutes: dict[date, list[int]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.envelope.occurred_at):
        day = local_date(e.envelope.occurred_at)
        if e.event_type == "PatientAdmitted":
            admitted[e.encounter_id] = e  # type: ignore[attr-defined]
            admissions[day] += 1
        else:
            discharges[day] += 1
            start = admitted[e.encounter_id].envelope.occurred_at  # type: ignore[attr-defined]
            minutes[day].append(int((e.envelope.occurred_at - start).total_seconds() // 60))
    checked = 0
    for day, record in _days(ledger).items():
        for field, expected in (("admissions", admissions), ("discharges", discharges)):
            shown = _published(record, field)
            if shown is not None:
                assert shown == expected[day], (day, field)
                checked += 1
        los = _published(record, "average_length_of_stay_days")
        if los is not None:
            assert los == round(sum(minutes[day]) / len(minutes[day]) / 1440, 4), day
            checked += 1
    assert checked >= 10


def test_referrals_by_direction_acceptance_rate_and_minutes_match_the_events() -> None:
    rng = random.Random(4)
    flows = [
        referral_flow(rng, rng.choice(("completed", "accepted", "rejected"))) for _ in range(160)
    ]
    ledger = Ledger("c1")
    ledger.apply([e for f in flows for e in f])
    by_direction: dict[tuple[date, str], int] = defaultdict(int)
    accepted: dict[date, list[int]] = defaultdict(list)
    rejected: dict[date, int] = defaultdict(int)
    for flow in flows:
        request = next(e for e in flow if isinstance(e, ReferralRequested))
        day = local_date(request.envelope.occurred_at)
        by_direction[(day, request.direction.lower())] += 1
        for e in flow:
            if isinstance(e, ReferralAccepted):
                waited = e.envelope.occurred_at - request.envelope.occurred_at
                accepted[day].append(int(waited.total_seconds() // 60))
            elif isinstance(e, ReferralRejected):
                rejected[day] += 1
    checked = 0
    for day, record in _days(ledger).items():
        for direction in ("up", "down", "lateral"):
            shown = _published(record, f"referrals_{direction}")
            if shown is not None:
                assert shown == by_direction[(day, direction)], (day, direction)
                checked += 1
        rate = _published(record, "acceptance_rate")
        if rate is not None:
            decided = len(accepted[day]) + rejected[day]
            assert rate == round(len(accepted[day]) / decided, 4) and rate < 1
            checked += 1
        waits = sorted(accepted[day])
        median = _published(record, "acceptance_minutes_median")
        if median is not None:
            assert median == statistics.median(waits)
            # Over fewer than 10 values the nearest-rank p90 is the maximum: withheld.
            p90 = waits[math.ceil(0.9 * len(waits)) - 1] if len(waits) >= P90_THRESHOLD else None
            assert _published(record, "acceptance_minutes_p90") == p90
            checked += 1
    assert checked >= 10


def test_census_occupancy_and_policy_ratios_match_the_events() -> None:
    from events.membership import InstitutionLevel, load_membership
    from projections.reporting.synthetic import census, visit

    members = load_membership()
    primary = {InstitutionLevel.TOWNSHIP_CENTRE, InstitutionLevel.VILLAGE_CLINIC}
    rng = random.Random(8)
    events = [
        *(e for _ in range(150) for e in visit(rng)),
        *(e for _ in range(80) for e in census(rng)),
        *(e for _ in range(120) for e in stay(rng)),
    ]
    ledger = Ledger("c1")
    ledger.apply(events)
    visits: dict[date, list[bool]] = defaultdict(list)
    last_census: dict[tuple[date, str, str], Event] = {}
    admissions: dict[date, int] = defaultdict(int)
    outside: dict[date, int] = defaultdict(int)
    for e in sorted(events, key=lambda e: e.envelope.occurred_at):
        day, source = local_date(e.envelope.occurred_at), e.envelope.source
        if e.event_type == "OutpatientVisitStarted":
            visits[day].append(members.level(source) in primary)
        elif e.event_type == "BedCensusReported":
            last_census[(day, source, e.ward_code)] = e  # type: ignore[attr-defined]
        elif e.event_type == "PatientAdmitted":
            admissions[day] += 1
        elif e.event_type == "PatientDischarged":
            outside[day] += e.discharge_disposition == "TRANSFERRED_OUTSIDE"  # type: ignore[attr-defined]
    checked = 0
    for day, record in _days(ledger).items():
        share = _published(record, "share_visits_primary")
        if share is not None:
            assert share == round(sum(visits[day]) / len(visits[day]), 4), day
            checked += 1
        reports = [c for (d, _, _), c in last_census.items() if d == day]
        occupancy = _published(record, "bed_occupancy")
        if occupancy is not None:
            occupied = sum(c.beds_occupied for c in reports)  # type: ignore[attr-defined]
            staffed = sum(c.beds_staffed for c in reports)  # type: ignore[attr-defined]
            assert _published(record, "inpatients") == occupied
            assert occupancy == round(occupied / staffed, 4), day
            checked += 1
        within = _published(record, "admitted_within_county")
        if within is not None:
            expected = admissions[day] / (admissions[day] + outside[day])
            assert within == round(expected, 4), day
            checked += 1
    assert checked >= 6
