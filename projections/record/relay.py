"""The record's relay: changed repeat checks go to the derived topic after their batch committed."""

from __future__ import annotations

from events.topics import Family, event_topic
from projections.outbox import OutboxRelay
from projections.record.projection import RECORD


class RepeatCheckRelay(OutboxRelay):
    """Drains the live record generation's outbox to `<consortium>.derived.repeats.v1`."""

    projection = RECORD.name

    def topic(self, view: str) -> str:
        """Every derived check goes to the one derived topic."""
        return event_topic(Family.DERIVED_REPEATS, self.consortium_id)
