"""The shared record declared for the frame."""

from __future__ import annotations

from events.topics import Family
from projections.frame.declaration import Projection
from projections.record.aggregates import EVENT_TYPES, Aggregate, RecordKey, evolve, key_of
from projections.record.store import RecordStore
from projections.record.tables import TABLES

RECORD: Projection[RecordKey, Aggregate] = Projection(
    name="record",
    families=(
        Family.ENCOUNTER,
        Family.ORDER,
        Family.RESULT,
        Family.REFERRAL,
        Family.CONSENT,
        Family.PERSON,
    ),
    key_of=key_of,
    evolve=evolve,
    store=RecordStore(),
    tables=TABLES,
    event_types=EVENT_TYPES,
)
