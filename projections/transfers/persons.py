"""Who a local patient is: the port the transfers read persons through, and its two adapters.

`IndexLinks` (wired): the consortium patient index's decisions — PersonLinked / PersonUnlinked
say which person a local patient is, PersonsMerged retires a person into another.
`ResidentIdHash` (the alternative, docs/referrals.md): the keyed hash of the resident id number
a member registered; it only ever links, and never merges.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Protocol

from events.envelope import Event
from events.patient import PatientDemographicsUpdated, PatientRegistered
from events.person import PersonLinked, PersonsMerged, PersonUnlinked
from events.topics import Family

KEY_VARIABLE = "TRANSFERS_PERSON_KEY"
ENVIRONMENT_VARIABLE = "CONSORTIUM_ENVIRONMENT"
DEVELOPMENT = "development"
# Public on purpose: it protects nothing, so it is refused outside development.
DEVELOPMENT_KEY = b"consortium-development-only-person-key"
MIN_KEY_BYTES = 16

LocalPatient = tuple[str, str]  # (institution code, the member's local patient id)


class PersonKeyError(RuntimeError):
    """No usable person hash key is configured for this environment."""


@dataclass(frozen=True, slots=True)
class Claim:
    """An identity statement: this local patient is (linked) or is no longer (not linked) this
    person. The current person follows projections/persons.current_person."""

    patient: LocalPatient
    person_id: str
    linked: bool = True


@dataclass(frozen=True, slots=True)
class Merge:
    """A merge statement: the retired person is now the survivor."""

    retired_id: str
    survivor_id: str


class PersonIds(Protocol):
    """The port: which events say who a local patient is, and what they say."""

    @property
    def families(self) -> tuple[Family, ...]:
        """The event families the identity statements come from."""
        ...

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that may make an identity statement."""
        ...

    def claim(self, event: Event) -> Claim | None:
        """The identity statement an event makes, or None when it makes none."""
        ...

    def merge(self, event: Event) -> Merge | None:
        """The merge statement an event makes, or None when it makes none."""
        ...


def person_key(environ: dict[str, str] | None = None) -> bytes:
    """The HMAC key: from TRANSFERS_PERSON_KEY; the public default only in development."""
    env = os.environ if environ is None else environ
    environment = env.get(ENVIRONMENT_VARIABLE, DEVELOPMENT)
    key = env.get(KEY_VARIABLE, "").encode()
    if not key:
        if environment != DEVELOPMENT:
            raise PersonKeyError(f"set {KEY_VARIABLE} (at least {MIN_KEY_BYTES} bytes)")
        return DEVELOPMENT_KEY
    if environment != DEVELOPMENT and key == DEVELOPMENT_KEY:
        raise PersonKeyError(f"{KEY_VARIABLE} is the public development key in {environment}")
    if len(key) < MIN_KEY_BYTES:
        raise PersonKeyError(f"{KEY_VARIABLE} must have at least {MIN_KEY_BYTES} bytes")
    return key


class ResidentIdHash:
    """Persons as the keyed hash (HMAC-SHA256) of the resident id number a member registered."""

    families: tuple[Family, ...] = (Family.PATIENT,)
    event_types: frozenset[str] = frozenset({"PatientRegistered", "PatientDemographicsUpdated"})

    def __init__(self, key: bytes | None = None) -> None:
        # Read lazily: importing the wiring must not need the key, only running transfers.
        self._key = key

    def person_of(self, resident_id_number: str) -> str:
        """The person id of a resident id number (already normalised by the contracts)."""
        if self._key is None:
            self._key = person_key()
        return hmac.new(self._key, resident_id_number.encode(), hashlib.sha256).hexdigest()

    def claim(self, event: Event) -> Claim | None:
        """A registration or update that states a resident id number says who the patient is."""
        if not isinstance(event, PatientRegistered | PatientDemographicsUpdated):
            return None
        env = event.envelope
        if event.resident_id_number is None or env.patient_local_id is None:
            return None
        return Claim((env.source, env.patient_local_id), self.person_of(event.resident_id_number))

    def merge(self, event: Event) -> Merge | None:
        """A hash is the same for the same resident id: nothing is ever merged."""
        return None


class IndexLinks:
    """Persons as the patient index decides them (projections/empi, `<consortium>.person.v1`).

    The index links records without a resident id too (probabilistically, on name, birth date,
    sex, phone, address), so their transfers are found; and it moves and merges persons when
    it learns more, which re-derives the transfers of every person involved.
    """

    families: tuple[Family, ...] = (Family.PERSON,)
    event_types: frozenset[str] = frozenset({"PersonLinked", "PersonUnlinked", "PersonsMerged"})

    def claim(self, event: Event) -> Claim | None:
        """A link or an unlink says who the local patient (of the body, not the envelope) is."""
        if isinstance(event, PersonLinked | PersonUnlinked):
            linked = isinstance(event, PersonLinked)
            return Claim((event.institution, event.local_id), str(event.person_id), linked)
        return None

    def merge(self, event: Event) -> Merge | None:
        """A merge retires a person into the survivor (person_id)."""
        if isinstance(event, PersonsMerged):
            return Merge(str(event.retired_person_id), str(event.person_id))
        return None
