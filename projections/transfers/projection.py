"""The transfer projection declared for the frame, with the person id source as a parameter."""

from __future__ import annotations

from functools import partial

from events.registry import EVENT_TYPES
from events.topics import Family
from projections.frame.declaration import Projection
from projections.transfers import stays
from projections.transfers.persons import IndexLinks, LocalPatient, PersonIds
from projections.transfers.store import TransferStore
from projections.transfers.tables import TABLES

STAY_TYPES = frozenset({"PatientAdmitted", "PatientDischarged"})
REFERRAL_TYPES = frozenset(n for n, m in EVENT_TYPES.items() if m.family is Family.REFERRAL)


def transfers_projection(person_ids: PersonIds) -> Projection[LocalPatient, stays.Patient]:
    """The transfers, reading persons through the given port (the patient index's decisions, or
    ResidentIdHash's registrations): stays and referrals, plus the port's families."""
    families = (Family.ENCOUNTER, Family.REFERRAL)
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


# Persons as the consortium patient index decides them (docs/referrals.md, "the same person").
TRANSFERS = transfers_projection(IndexLinks())
