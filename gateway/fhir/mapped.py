"""A mapped resource with its clinical time, and helpers shared by the mappers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.fhir.systems import BASE, Json


@dataclass(frozen=True, slots=True)
class Mapped:
    """One FHIR resource and the time it sorts by in a searchset (newest first)."""

    at: datetime
    resource: Json

    @property
    def key(self) -> str:
        """Its relative URL, unique in a bundle: ResourceType/id."""
        return f"{self.resource['resourceType']}/{self.resource['id']}"


def instant(at: datetime | str | None) -> str | None:
    """A FHIR instant/dateTime (with offset) from a datetime or an ISO string."""
    if at is None:
        return None
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    return value.isoformat()


def recorded_by(institution: str) -> Json:
    """The meta of a resource recorded by a member: meta.source names the member."""
    return {"source": f"{BASE}/institution/{institution}"}


def blank(value: object) -> bool:
    """Whether a value is absent in FHIR JSON: None, empty, or a string of white space only
    (R4's string pattern needs a non-space character, or an ASCII space, tab or line break: a
    full-width space alone, 　 from a Chinese input method, is no valid string)."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or value in ({}, [])


def drop_empty(resource: Json) -> Json:
    """The resource without None, empty lists, empty objects and blank strings (FHIR forbids
    empty elements)."""
    out: Json = {}
    for name, given in resource.items():
        value = given
        if isinstance(given, dict):
            value = drop_empty(given)
        elif isinstance(given, list):
            kept = [drop_empty(v) if isinstance(v, dict) else v for v in given]
            value = [v for v in kept if not blank(v)]
        if not blank(value):
            out[name] = value
    return out
