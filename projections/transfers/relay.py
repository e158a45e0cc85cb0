"""The transfers relay: changed transfers go to the derived topic after their batch committed."""

from __future__ import annotations

from events.topics import Family, event_topic
from projections.outbox import OutboxRelay
from projections.transfers.projection import TRANSFERS


class TransferRelay(OutboxRelay):
    """Drains the live transfers generation's outbox to `<consortium>.derived.transfers.v1`."""

    projection = TRANSFERS.name

    def topic(self, view: str) -> str:
        """Every derived transfer goes to the one derived topic."""
        return event_topic(Family.DERIVED_TRANSFERS, self.consortium_id)
