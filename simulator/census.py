"""Bed census (床位日报): each ward reports staffed and occupied beds at every shift change."""

from __future__ import annotations

from datetime import timedelta

from events.encounter import BedCensusReported
from simulator.clock import local, local_midnight
from simulator.county import County
from simulator.sites import Site, Ward

# Nursing shifts hand over at 07:00, 15:00 and 23:00 local time.
SHIFT_HOURS = (7, 15, 23)


def start(county: County) -> None:
    """Schedule every ward's reports over the simulated period."""
    day = local_midnight(local(county.period_start).date())
    while day < county.clock.end:
        for hour in SHIFT_HOURS:
            when = day + timedelta(hours=hour)
            if when >= county.period_start:
                county.clock.at(when, lambda: _report_all(county))
        day += timedelta(days=1)


def _report_all(county: County) -> None:
    for site in county.sites.values():
        for ward in site.wards:
            _report(county, site, ward)


def _report(county: County, site: Site, ward: Ward) -> None:
    # The simulated residents are a sample of the county: the rest fill beds in proportion.
    share = min(1.0, len(county.population.people) / county.config.county_population)
    weekend = local(county.clock.now).weekday() >= 5
    occupancy = ward.background * (0.93 if weekend else 1.0) + county.rng.gauss(0, 0.04)
    others = max(0, round(ward.beds * occupancy * (1 - share)))
    county.emit(
        BedCensusReported,
        site,
        None,
        None,
        department_code=ward.department[0],
        ward_code=ward.code,
        beds_staffed=ward.beds,
        beds_occupied=others + len(ward.patients),
    )
