"""A person's timeline entries as FHIR resources, one per clinical thing, newest first."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from gateway.fhir.encounters import conditions, encounters
from gateway.fhir.mapped import Mapped
from gateway.fhir.orders import orders
from gateway.fhir.referrals import referrals
from gateway.fhir.results import observations, reports
from projections.record.queries import TimelineEntry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Mapper = Callable[[str, Sequence[TimelineEntry]], list[Mapped]]
MAPPERS: tuple[Mapper, ...] = (encounters, conditions, orders, observations, reports, referrals)
# The resource types a person's record yields (what $everything may hold besides Patient).
RECORD_TYPES = (
    "Encounter",
    "Condition",
    "ServiceRequest",
    "MedicationRequest",
    "Observation",
    "DiagnosticReport",
    "Task",
)


def resources_of(
    person_id: str,
    entries: Iterable[TimelineEntry],
    types: Iterable[str] | None = None,
    now: datetime | None = None,
) -> list[Mapped]:
    """The resources the entries make (of the given types), in searchset order; referrals in
    their board's state at `now` (the read's time)."""
    lines = list(entries)
    wanted = None if types is None else frozenset(types)
    mappers = [partial(referrals, now=now) if m is referrals else m for m in MAPPERS]
    found = [
        m
        for mapper in mappers
        for m in mapper(person_id, lines)
        if wanted is None or m.resource["resourceType"] in wanted
    ]
    return sorted(found, key=order_key)


def order_key(item: Mapped) -> tuple[int, str]:
    """Newest first, then by type and id: a total order that keyset paging can resume."""
    return (-micros(item), item.key)


def micros(item: Mapped) -> int:
    """The item's time in microseconds since the epoch (exact, unlike a float)."""
    return (item.at - EPOCH) // timedelta(microseconds=1)
