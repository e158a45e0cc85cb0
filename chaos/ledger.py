"""What the campaign's publishers were told: every acknowledged event id, and the SDK's order."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

GATEWAY, SDK = "gateway", "sdk"


@dataclass
class Ledger:
    """Acknowledged event ids by path; publish sequence of the SDK's events; answers seen."""

    acknowledged: dict[UUID, str] = field(default_factory=dict)
    # The order in which the SDK handed events to Kafka (its first attempt at each).
    sdk_sequence: dict[UUID, int] = field(default_factory=dict)
    offered: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "gateway 503", "sdk retry" ...
    refusals: list[str] = field(default_factory=list)  # answers that no retry can fix
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self, path: str, event_ids: list[UUID]) -> None:
        """Kafka acknowledged these events (a 202, a 503's stored list or a delivery report)."""
        with self._lock:
            for event_id in event_ids:
                self.acknowledged.setdefault(event_id, path)

    def sequenced(self, event_ids: list[UUID]) -> None:
        """The SDK is about to publish these events, in this order."""
        with self._lock:
            for event_id in event_ids:
                self.sdk_sequence.setdefault(event_id, len(self.sdk_sequence))

    def answered(self, what: str) -> None:
        """Count one answer or retry."""
        with self._lock:
            self.answers[what] += 1

    def refused(self, what: str) -> None:
        """Record an answer the campaign cannot retry its way out of."""
        with self._lock:
            self.answers["refused"] += 1
            if len(self.refusals) < 20:
                self.refusals.append(what)

    def by_path(self) -> Counter[str]:
        """Acknowledged events per path."""
        with self._lock:
            return Counter(self.acknowledged.values())
