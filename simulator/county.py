"""The simulated county: its members, residents and clock, and how events are emitted."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from events.envelope import Event
from events.membership import Institution, InstitutionLevel, Membership, load_membership
from events.patient import (
    PatientDemographicsUpdated,
    PatientIdentifiersMerged,
    PatientRegistered,
)
from events.validation import Checks
from simulator.clock import Scheduler, default_start
from simulator.noise import NoiseRates, Registration, Truth, register
from simulator.population import Person, Population, Township, build_population
from simulator.sites import Site, build_site

E = TypeVar("E", bound=Event)
MERGED_SHARE = 0.7


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: seed, period, size and how messy the identity data is."""

    seed: int = 1
    days: float = 7.0
    population: int = 20_000
    start: datetime | None = None
    noise: NoiseRates = field(default_factory=NoiseRates)
    # The residents are a sample of a county this large; bed census adds the rest.
    county_population: int = 300_000
    warmup: timedelta = timedelta(days=10)


@dataclass
class Flow:
    """The correlation of one care flow and the last event in it (the next one's cause)."""

    correlation: UUID
    last: UUID | None = None


class County:
    """A consortium running for a simulated period; `events()` yields what its members publish."""

    def __init__(self, config: SimulationConfig, membership: Membership | None = None) -> None:
        self.config = config
        self.membership = membership or load_membership()
        self.rng = random.Random(f"decisions:{config.seed}")
        self._ids = random.Random(f"event-ids:{config.seed}")
        start = config.start or default_start(config.days)
        self.period_start = start
        # Admissions of the days before run too, so wards are full from the first day.
        self.clock = Scheduler(start - config.warmup, start + timedelta(days=config.days))
        self.checks: Checks = {"membership": self.membership}
        self.sites = {i.code: build_site(i, self.rng) for i in self.membership}
        self.townships = self.membership.at_level(InstitutionLevel.TOWNSHIP_CENTRE)
        # Ages as of the first simulated day (warm-up included): nobody is seen before birth.
        self.population = self._residents(self.clock.start)
        self.truth = Truth()
        self.inpatients: set[str] = set()
        self.registrations: dict[tuple[str, str], Registration] = {}
        self._kin = {h.number: h.members for h in self.population.households}
        self._clinics = {
            (i, _strip(clinic.name, "卫生室")): self.sites[clinic.code]
            for i, township in enumerate(self.townships)
            for clinic in self.membership.children(township.code)
        }
        self._out: list[Event] = []

    def _residents(self, start: datetime) -> Population:
        places = [Township(_strip(t.name, "卫生院"), self._villages(t)) for t in self.townships]
        county = self.townships[0].code[:6]
        neighbours = [
            f"{county[:4]}{n:02d}" for n in range(1, 6) if f"{county[:4]}{n:02d}" != county
        ]
        return build_population(
            self.config.seed, self.config.population, places, county, start.date(), neighbours
        )

    def _villages(self, township: Institution) -> tuple[str, ...]:
        clinics = self.membership.children(township.code)
        names = tuple(
            _strip(c.name, "卫生室") for c in clinics if c.level.value == "village_clinic"
        )
        return names or (_strip(township.name, "卫生院") + "街道",)

    def village_clinic(self, person: Person) -> Site | None:
        """The clinic of the person's village, if the village has one."""
        return self._clinics.get((person.township, person.village))

    def township_site(self, person: Person) -> Site:
        """The township health centre where the person lives."""
        return self.sites[self.townships[person.township].code]

    def events(self) -> Iterator[Event]:
        """Run the simulation to its end, yielding events in the order they occur."""
        while self.clock.step():
            if self._out:
                yield from self._out
                self._out.clear()

    def new_uuid(self) -> UUID:
        """A UUID (version 4) drawn from the seeded generator."""
        return uuid.UUID(int=self._ids.getrandbits(128), version=4)

    def flow(self) -> Flow:
        """A new flow with a fresh correlation id."""
        return Flow(self.new_uuid())

    def emit(
        self,
        model: type[E],
        site: Site,
        local_id: str | None,
        flow: Flow | None,
        **fields: Any,
    ) -> E:
        """Validate and publish one event of a member at the current simulated time."""
        now = self.clock.now
        # Village clinics often key in their register hours later; hospital systems at once.
        lag = self.rng.uniform(60, 4 * 3600) if site.kind == "village" else self.rng.uniform(1, 30)
        envelope = {
            "event_id": self.new_uuid(),
            "event_type": model.__name__,
            "occurred_at": now,
            "recorded_at": now + timedelta(seconds=lag),
            "source": site.code,
            "patient_local_id": local_id,
            "correlation_id": flow.correlation if flow else None,
            "causation_id": flow.last if flow else None,
        }
        event = model.model_validate({"envelope": envelope, **fields}, context=self.checks)
        if flow is not None:
            flow.last = event.envelope.event_id
        self._out.append(event)
        return event

    def local_id(self, site: Site, person: Person, flow: Flow | None) -> str:
        """The person's id at the site, registering them first if they are new there."""
        known = site.local_ids.get(person.key)
        if known is not None:
            return known
        retired = None
        if self.rng.random() < self.config.noise.duplicate_registration:
            # An old, garbled record of the same person already sits in the site's register.
            retired = self._register(site, person, flow, "duplicate_registration")
        local_id = self._register(site, person, flow)
        site.local_ids[person.key] = local_id
        if retired is not None and self.rng.random() < MERGED_SHARE:
            # The records office (病案室) finds and merges duplicates within days.
            delay = timedelta(hours=self.rng.uniform(4, 72))
            self.clock.after(delay, lambda: self._merge(site, local_id, retired))
        return local_id

    def _register(self, site: Site, person: Person, flow: Flow | None, extra: str = "") -> str:
        local_id = site.new_patient_id()
        kin = self._kin[person.household]
        reg = register(
            person, site.noise_level, self.rng, self.config.noise, kin, self.clock.now.date()
        )
        if extra:
            reg = replace(reg, noise=(*reg.noise, extra))
        self.emit(
            PatientRegistered,
            site,
            local_id,
            flow,
            resident_id_number=reg.id_number,
            medical_insurance_number=reg.insurance_number,
            name=reg.name,
            sex=_sex(reg.sex),
            birth_date=reg.birth_date,
            ethnicity=reg.ethnicity,
            phone=reg.phone,
            address=reg.address,
            township_division_code=self.townships[person.township].township_division_code,
        )
        self.truth.record(site.code, local_id, reg)
        self.registrations[(site.code, local_id)] = reg
        return local_id

    def _merge(self, site: Site, surviving: str, retired: str) -> None:
        self.emit(
            PatientIdentifiersMerged,
            site,
            surviving,
            None,
            surviving_local_id=surviving,
            retired_local_id=retired,
            reason="病案室核对为同一患者",
        )

    def correct_identity(self, site: Site, person: Person, local_id: str, flow: Flow) -> None:
        """Fix the registration from the id card, as an admission (and insurance) requires."""
        reg = self.registrations[(site.code, local_id)]
        changes: dict[str, Any] = {}
        if reg.id_number != person.id_number:
            changes["resident_id_number"] = person.id_number
            changes["birth_date"] = person.birth_date
            changes["sex"] = _sex(person.sex)
        if reg.name != person.name:
            changes["name"] = person.name
        if reg.phone != person.phone:
            changes["phone"] = person.phone
        if not changes:
            return
        self.emit(PatientDemographicsUpdated, site, local_id, flow, **changes)
        fixed = {k: v for k, v in changes.items() if k in ("name", "phone")}
        self.registrations[(site.code, local_id)] = replace(
            reg, id_number=person.id_number, birth_date=person.birth_date, sex=person.sex, **fixed
        )


def _sex(code: str) -> str:
    return "MALE" if code == "M" else "FEMALE"


def _strip(name: str, suffix: str) -> str:
    return name.removesuffix(suffix).removesuffix("中心")
