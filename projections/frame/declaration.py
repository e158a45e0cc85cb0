"""A projection declared as data: its topics, its pure logic and its PostgreSQL store."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from events.envelope import Event
from events.topics import Family

if TYPE_CHECKING:
    from psycopg import Cursor

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")


@dataclass(frozen=True)
class Table:
    """One read-model table: its DDL (with `{schema}`), and what its digest covers."""

    name: str
    ddl: str
    digest_columns: tuple[str, ...]
    order_by: tuple[str, ...]
    # Secondary indexes (DDL with `{schema}`) that the store's own writes and locks do not
    # use: a rebuild creates them after its replay has loaded the rows (docs/processing.md).
    # Never a unique index (ON CONFLICT relies on those) nor one a store's query needs.
    after_load: str = ""
    # A column that readers follow changes by (a feed of rows changed since a time): a switch
    # sets it to the switch's time on every row of the new generation, so such a feed sends the
    # new generation's rows once, also those written before its own cursor (docs/read-api.md).
    changed_at: str = ""


# What a `changed_at` column is set to: the clock while the writing statement runs, once per
# statement — not now(), the transaction's start, which is stamped before pg_stat_activity
# shows the transaction, so a change feed's horizon could pass it unseen (docs/read-api.md).
CHANGED_NOW = "(SELECT clock_timestamp())"


class Store(Protocol[K, A]):
    """Loads and saves a projection's aggregates inside the batch's transaction."""

    def lock(self, cur: Cursor[object], schema: str, keys: Sequence[K]) -> dict[K, A]:
        """Lock the rows of these keys (creating missing ones) and return their aggregates."""
        ...

    def save(
        self, cur: Cursor[object], schema: str, changed: Mapping[K, A], clock: datetime | None
    ) -> None:
        """Write the changed aggregates, their derived rows computed at the event clock."""
        ...

    def sweep(self, cur: Cursor[object], schema: str, clock: datetime) -> int:
        """Re-derive rows that a later event clock alone changes; how many changed."""
        ...


@dataclass(frozen=True)
class Projection(Generic[K, A]):
    """Everything the frame needs to run a projection; the logic is pure, the store is not."""

    name: str
    families: tuple[Family, ...]
    # The aggregate an event belongs to, or None when the event is not this projection's.
    key_of: Callable[[Event], K | None]
    # Pure: the aggregate after one more event (None: the aggregate did not exist yet).
    evolve: Callable[[A | None, Event], A]
    store: Store[K, A]
    tables: tuple[Table, ...]
    # The event types key_of can take (None: all). Records of other types on the projection's
    # topics are counted as ignored from their schema id alone, without decoding them.
    event_types: frozenset[str] | None = None
    # True: a rebuild sweeps once, after its replay, instead of at the end of every batch.
    # Only for stores whose saved rows do not depend on earlier sweeps having run (the referral
    # board is derived from its facts and the clock alone); nobody reads a building generation.
    rebuild_sweeps_at_end: bool = False
