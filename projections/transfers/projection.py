"""The transfer projection declared for the frame, with the person id source as a parameter."""

from __future__ import annotations

from functools import partial

from events.registry import EVENT_TYPES
from events.topics import Family
from projections.frame.declaration import Projection
from projections.transfers import stays
from projections.transfers.persons import LocalPatient, PersonIds, ResidentIdHash
from projections.transfers.store import TransferStore
from projections.transfers.tables import TABLES

STAY_TYPES = frozenset({"PatientAdmitted", "PatientDischarged"})
REFERRAL_TYPES = frozenset(n for n, m in EVENT_TYPES.items() if m.family is Family.REFERRAL)


def transfers_projection(person_ids: PersonIds) -> Projection[LocalPatient, stays.Patient]:
    """The transfers, reading persons through the given port (the EMPI's links, later)."""
    families = (Family.PATIENT, Family.ENCOUNTER, Family.REFERRAL)
    extra = tuple(f for f in person_ids.families if f not in families)
    return Projection(
        name="transfers",
        families=(*families, *extra),
        key_of=partial(stays.key_of, person_ids),
        evolve=partial(stays.evolve, person_ids),
        store=TransferStore(),
        tables=TABLES,
        event_types=frozenset({*STAY_TYPES, *REFERRAL_TYPES, *person_ids.event_types}),
    )


# Until the patient index is wired: persons by keyed hash of the resident id number.
TRANSFERS = transfers_projection(ResidentIdHash())
