"""The reporting relay: changed figures go to the bureau topics after their batch committed."""

from __future__ import annotations

from events.topics import REPORTING_TOPICS
from projections.outbox import OutboxRelay, RelayError
from projections.reporting.projection import NAME

__all__ = ["Relay", "RelayError"]


class Relay(OutboxRelay):
    """Drains the live generation's outbox to `<consortium>.reporting.<view>.v1`."""

    projection = NAME

    def topic(self, view: str) -> str:
        """The bureau topic of the record's view."""
        return REPORTING_TOPICS[view].name(self.consortium_id)
