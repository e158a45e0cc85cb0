"""The reporting projection declared for the frame."""

from __future__ import annotations

from events.membership import Membership
from events.topics import Family
from projections.frame.declaration import Projection
from projections.reporting.entities import Entity, evolve, key_of
from projections.reporting.store import ReportingStore
from projections.reporting.tables import TABLES

NAME = "reporting"


def reporting_projection(
    consortium_id: str | None = None, members: Membership | None = None
) -> Projection[str, Entity]:
    """The projection; the consortium id defaults to the settings' (read when first needed)."""
    return Projection(
        name=NAME,
        families=(
            Family.ENCOUNTER,
            Family.REFERRAL,
            Family.DERIVED_TRANSFERS,
            Family.DERIVED_REPEATS,
        ),
        key_of=key_of,
        evolve=evolve,
        store=ReportingStore(consortium_id, members),
        tables=TABLES,
    )


REPORTING = reporting_projection()
