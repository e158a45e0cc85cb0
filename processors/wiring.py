"""Every projection the processors run, by name: the one place they are assembled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.frame.declaration import Projection
from projections.record.projection import RECORD
from projections.referrals.projection import REFERRALS
from projections.reporting.projection import REPORTING, reporting_projection
from projections.transfers.projection import TRANSFERS

PROJECTIONS: dict[str, Projection[Any, Any]] = {
    p.name: p for p in (REFERRALS, TRANSFERS, REPORTING, RECORD)
}


def projection(name: str, consortium_id: str | None = None) -> Projection[Any, Any]:
    """A registered projection, or a KeyError naming the known ones.

    Given a consortium, the reporting projection scopes its consortium-wide figures to it (the
    registered one takes the process settings' consortium)."""
    try:
        found = PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None
    if consortium_id is not None and name == REPORTING.name:
        return reporting_projection(consortium_id)
    return found


def companions(
    name: str, bootstrap_servers: str, database_url: str, consortium_id: str
) -> list[Callable[[], object]]:
    """What runs beside a projection's processor: the outbox relay of a projection that has one
    (reporting: the bureau topics; transfers and record: the derived facts reporting reads)."""
    from consortium.topics import ensure_topics
    from events.topics import EVENT_TOPICS, REPORTING_TOPICS, Family

    if name == REPORTING.name:
        from projections.reporting.relay import Relay

        ensure_topics(bootstrap_servers, consortium_id, specs=REPORTING_TOPICS.values())
        return [Relay(database_url, bootstrap_servers, consortium_id).drain]
    if name == TRANSFERS.name:
        from projections.transfers.relay import TransferRelay

        derived = [EVENT_TOPICS[Family.DERIVED_TRANSFERS]]
        ensure_topics(bootstrap_servers, consortium_id, specs=derived)
        return [TransferRelay(database_url, bootstrap_servers, consortium_id).drain]
    if name == RECORD.name:
        from projections.record.relay import RepeatCheckRelay

        derived = [EVENT_TOPICS[Family.DERIVED_REPEATS]]
        ensure_topics(bootstrap_servers, consortium_id, specs=derived)
        return [RepeatCheckRelay(database_url, bootstrap_servers, consortium_id).drain]
    return []
