"""Report windows on the event clock: UTC hours and Asia/Shanghai calendar days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

# Bureaus count days as the county lives them; China has one offset (+08:00) and no DST,
# so every local hour is a UTC hour and 24 hours make exactly one local day.
REPORTING_ZONE = ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class Grain(StrEnum):
    """How long a report window is."""

    HOUR = "HOUR"
    DAY = "DAY"


def local_date(at: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return at.astimezone(REPORTING_ZONE).date()


def day_start(day: date) -> datetime:
    """The UTC instant at which a local day begins."""
    return datetime.combine(day, time(), REPORTING_ZONE).astimezone(UTC)


def window_start(grain: Grain, at: datetime) -> datetime:
    """The UTC start of the window of this grain that holds the instant."""
    if grain is Grain.HOUR:
        return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return day_start(local_date(at))


def window_end(grain: Grain, start: datetime) -> datetime:
    """The (exclusive) end of a window."""
    return start + (HOUR if grain is Grain.HOUR else DAY)
