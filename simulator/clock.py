"""The simulated clock: a discrete-event scheduler and the county's local time."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone

# Every member keeps Beijing time; opening hours and night shifts are in local time.
CHINA = timezone(timedelta(hours=8), "CST")

Action = Callable[[], object]


class Scheduler:
    """Runs actions in simulated-time order; ties run in the order they were scheduled."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.end = end
        self.now = start
        self._queue: list[tuple[datetime, int, Action]] = []
        self._seq = itertools.count()

    def at(self, when: datetime, action: Action) -> None:
        """Run the action at a simulated time; times past the end never come."""
        when = max(when, self.now)
        if when < self.end:
            heapq.heappush(self._queue, (when, next(self._seq), action))

    def after(self, delay: timedelta, action: Action) -> None:
        """Run the action a while after now."""
        self.at(self.now + delay, action)

    def step(self) -> bool:
        """Run the next action; False when nothing is left before the end."""
        if not self._queue:
            return False
        self.now, _, action = heapq.heappop(self._queue)
        action()
        return True


def local(moment: datetime) -> datetime:
    """The moment on the county's wall clock."""
    return moment.astimezone(CHINA)


def local_midnight(day: date) -> datetime:
    """The start of a local calendar day, in UTC."""
    return datetime.combine(day, time(0), CHINA).astimezone(UTC)


def default_start(days: float, now: datetime | None = None) -> datetime:
    """A local midnight such that the period ends at least a day before now."""
    now = now or datetime.now(UTC)
    last_day = local(now).date() - timedelta(days=1)
    return local_midnight(last_day - timedelta(days=int(days + 0.999)))
