"""Publishing for the HTTP and HL7 paths: authorise, deduplicate by event id, publish, record."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from psycopg_pool import AsyncConnectionPool

from events.envelope import Event
from events.publisher import Delivery, PublishError, UnpublishableError
from events.referral import ReferralRequested
from gateway.delivery import INLINE_EVENTS, AsyncPublisher
from gateway.grouped import Grouped
from gateway.principals import Principal
from gateway.problems import FieldError, ProblemError, jsonpath, pointer
from gateway.referral_claims import claim_requests, forget_requests, request_digest

log = logging.getLogger(__name__)
Recorded = dict[UUID, tuple[bytes, Delivery]]
# One row of gateway_published_events: id, content digest, source, topic, partition, offset.
Row = tuple[UUID, bytes, str, str, int, int]


# The record of some event ids: id, content digest, topic, partition, offset (published ones:
# a row without a position is a reservation of a publish in progress, see RESERVE).
RECORDED_ROWS = (
    "SELECT event_id, content_sha256, topic, kafka_partition, kafka_offset"
    " FROM gateway_published_events WHERE event_id = ANY(%s) AND kafka_offset IS NOT NULL"
)


# The same with its ids as one binary parameter: for 1,000 ids a third of the client CPU of the
# text form (psycopg writes each element's text and quotes it; docs/gateway.md, Performance).
RECORDED_ROWS_BINARY = RECORDED_ROWS.replace("ANY(%s)", "ANY(%b::uuid[])")


# Reserve event ids before publishing them (one statement for a group of requests). Rows come
# back only for the ids the statement did not take (usually none: the common case parses
# nothing): with the row that held the id when the statement started if it was committed by
# then (topic and offset NULL while still reserved; whether the reservation had lapsed), else
# all NULL — reserved by a statement that committed meanwhile, in progress. An id is taken when
# it was new, or its reservation is older than %s seconds (its holder is gone) and holds the
# same content and source: the holder may have published before it died, so other content never
# takes its id over (409). Sorted, so that two statements never wait on each other's rows in
# opposite orders.
#
# Committed without waiting for the WAL flush (synchronous_commit off, for this statement's
# transaction, whatever the session says): a reservation guards against concurrent requests while
# they run, so one lost with a crash of PostgreSQL loses nothing; waiting for the flush cost every
# publish an fsync. (The record written after Kafka's ack does not wait for it either: the pool's
# sessions set it off, gateway/state.py; a lost record costs a republish on retry.)
RESERVE = (
    "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),"
    " want AS (SELECT w.* FROM async, unnest(%b::uuid[], %b::bytea[], %b::text[])"
    " AS w(event_id, content_sha256, source)),"
    " taken AS (INSERT INTO gateway_published_events AS g"
    " (event_id, content_sha256, source, reserved_at)"
    " SELECT event_id, content_sha256, source, now() FROM want ORDER BY event_id"
    " ON CONFLICT (event_id) DO UPDATE SET reserved_at = EXCLUDED.reserved_at"
    " WHERE g.kafka_offset IS NULL AND g.reserved_at < now() - make_interval(secs => %s)"
    " AND g.content_sha256 = EXCLUDED.content_sha256 AND g.source = EXCLUDED.source"
    " RETURNING g.event_id)"
    " SELECT w.event_id, g.content_sha256, g.topic, g.kafka_partition, g.kafka_offset,"
    " g.reserved_at < now() - make_interval(secs => %s)"
    " FROM want w LEFT JOIN gateway_published_events g ON g.event_id = w.event_id"
    " WHERE w.event_id NOT IN (SELECT event_id FROM taken)"
)
# One reservation: id, content digest, source.
Wanted = tuple[UUID, bytes, str]


class Held(NamedTuple):
    """Another request's row of an id: its content digest, its delivery once published (None
    while a publish runs), and whether an unpublished reservation lapsed (its holder is gone,
    perhaps after Kafka acknowledged it)."""

    digest: bytes
    delivery: Delivery | None
    lapsed: bool


# What a reservation found for one request: the ids it holds now, and the rows of the others.
Reserved = tuple[set[UUID], dict[UUID, Held]]


def reservation_shares(
    requests: Sequence[Sequence[Wanted]], rows: Iterable[Sequence[Any]]
) -> list[Reserved]:
    """Each request's share of RESERVE's rows (the ids it did not take). An id two requests of
    the group want is given to the first only (the statement reserves it once); the second
    finds it in progress."""
    refused: set[UUID] = set()
    seen: dict[UUID, Held] = {}
    for eid, digest, topic, partition, offset, lapsed in rows:
        refused.add(eid)
        if digest is not None:
            delivery = None if offset is None else Delivery(eid, topic, partition, offset)
            seen[eid] = Held(bytes(digest), delivery, bool(lapsed))
    given: set[UUID] = set()
    shares: list[Reserved] = []
    for wanted in requests:
        ids = [w[0] for w in wanted]
        mine = {eid for eid in ids if eid not in refused and eid not in given}
        given |= mine
        shares.append((mine, {eid: seen[eid] for eid in ids if eid in seen}))
    return shares


def all_ids(requests: Sequence[Sequence[UUID]]) -> list[UUID]:
    """Every event id of some requests, once."""
    return list({eid for ids in requests for eid in ids})


def recorded_of(
    requests: Sequence[Sequence[UUID]], rows: Iterable[Sequence[Any]]
) -> list[Recorded]:
    """Each request's share of the rows of RECORDED_ROWS."""
    found = {r[0]: (bytes(r[1]), Delivery(r[0], r[2], r[3], r[4])) for r in rows}
    return [{eid: found[eid] for eid in ids if eid in found} for ids in requests]


def content_digest(event: Event) -> bytes:
    """SHA-256 of the event's canonical JSON: equal for equal content, whatever the input's form."""
    return hashlib.sha256(event.model_dump_json().encode()).digest()


@dataclass(frozen=True)
class Known:
    """What the record held for some event ids, looked up ahead of `submit`."""

    ids: frozenset[UUID]
    recorded: Recorded


@dataclass(frozen=True)
class Outcome:
    """Every event's delivery, in request order, and how many were answered from the record."""

    deliveries: list[Delivery]
    replayed: int


def _located(index: int | None, detail: str, *field: str) -> FieldError:
    loc: list[int | str] = [*([] if index is None else [index]), *field]
    return FieldError(pointer=pointer(loc), path=jsonpath(loc), detail=detail)


def _published_otherwise(index: int | None, maybe: bool = False) -> FieldError:
    """The error of an event whose id the record holds with other content (`maybe`: in a
    reservation whose holder is gone, perhaps after publishing it)."""
    if maybe:
        detail = "this event_id may already have been published with different content"
    else:
        detail = "this event_id was already published with different content"
    return _located(index, detail, "envelope", "event_id")


def _id_conflict(errors: list[FieldError]) -> ProblemError:
    """409: an event id reused with different content (in the request or against the record)."""
    return ProblemError(
        409,
        "Conflict",
        "an event id is reused with different content; nothing was published",
        kind="event-id-conflict",
        errors=errors,
    )


def _numbered(index: int, total: int, detail: str, batch: bool) -> FieldError:
    """An error about a whole event: its pointer in a batch; in one body that holds several
    events (an HL7 message) its number in the detail, which the ERR segment carries."""
    if batch:
        return _located(index, detail)
    return _located(None, f"event {index + 1} of {total}: {detail}" if total > 1 else detail)


class Ingest:
    """The one way events enter Kafka through the gateway."""

    def __init__(
        self,
        publisher: AsyncPublisher,
        pool: AsyncConnectionPool,
        *,
        publish_timeout_s: float,
        retry_after_s: int,
    ) -> None:
        self._publisher = publisher
        self._pool = pool
        # The producer gives up at publish_timeout_s; waiting a little longer sees its verdict,
        # and leaves the publisher time to stop queuing before librdkafka's own deadline.
        self._wait_s = publish_timeout_s + 5.0
        self._retry_after = str(retry_after_s)
        # Concurrent requests share their lookups and inserts (docs/gateway.md, Performance).
        self._lookups: Grouped[list[UUID], Recorded] = Grouped(self._select_recorded)
        self._reservations: Grouped[list[Wanted], Reserved] = Grouped(self._reserve_all)
        # A reservation older than this lost its holder (crash): its publish gave up long ago.
        self._stale_s = 2 * self._wait_s
        self._inserts: Grouped[list[Row], None] = Grouped(self._insert_records)

    @property
    def stale_s(self) -> float:
        """How old a claim of a publish in progress must be before its holder counts as gone:
        by then its publish gave up long ago (twice the wait for Kafka)."""
        return self._stale_s

    async def deliver(self, events: Sequence[Event]) -> list[Delivery]:
        """Publish events and wait for Kafka's verdict on each: their deliveries, or
        PublishError. The one way the gateway's routers publish (the events path's and the
        identity router's): its wait outlasts librdkafka's delivery timeout, so queuing ends
        while librdkafka can still give up on every event before the answer, and a failure
        is final: an event PublishError lists as failed is never delivered after it
        (docs/gateway.md, "503 is final"). UnpublishableError: nothing was produced."""
        return await self._publisher.publish(events, self._wait_s)

    async def submit(
        self,
        principal: Principal,
        events: Sequence[Event],
        *,
        batch: bool = True,
        channel: str = "http",
        client: str | None = None,
        known_ahead: Known | None = None,
    ) -> Outcome:
        """Publish what is new, answer retries from the record; 403/409/503 as ProblemError.

        A refusal (403) is recorded in `publish_refusals` before it is answered."""
        await self._authorise(principal, events, batch, channel, client)
        digests = [content_digest(e) for e in events]
        first: dict[UUID, int] = {}
        conflicts: list[FieldError] = []
        for i, event in enumerate(events):
            eid = event.envelope.event_id
            if eid in first and digests[first[eid]] != digests[i]:
                conflicts.append(
                    _located(
                        i if batch else None,
                        "same event_id as an earlier event of this request with different content",
                        "envelope",
                        "event_id",
                    )
                )
            first.setdefault(eid, i)
        if known_ahead is not None and known_ahead.ids.issuperset(first):
            known = {eid: rec for eid, rec in known_ahead.recorded.items() if eid in first}
        else:
            known = await self._recorded(list(first))
        for i, event in enumerate(events):
            rec = known.get(event.envelope.event_id)
            if rec is not None and rec[0] != digests[i] and first[event.envelope.event_id] == i:
                conflicts.append(_published_otherwise(i if batch else None))
        if conflicts:
            raise _id_conflict(conflicts)
        fresh = [events[i] for i in first.values() if events[i].envelope.event_id not in known]
        claimed = await self._claim_referrals(principal, events, fresh, batch)
        try:
            if fresh:
                # Concurrent requests with these ids (any process) may have published them since.
                fresh, others = await self._reserve(fresh, digests, first, batch, known)
                known = {**known, **others}
            by_id = {eid: rec[1] for eid, rec in known.items()}
            if fresh:
                stored = await self._publish(fresh, digests, first, by_id, batch)
                by_id.update({d.event_id: d for d in stored})
        except BaseException as exc:
            await self._forget_unpublished(principal, claimed, exc)
            raise
        return Outcome(
            [by_id[e.envelope.event_id] for e in events],
            replayed=sum(1 for e in events if e.envelope.event_id in known),
        )

    async def _forget_unpublished(
        self,
        principal: Principal,
        claimed: Mapping[UUID, tuple[frozenset[UUID], bytes]],
        exc: BaseException | None,
    ) -> None:
        """After a failure (or a refusal: `exc` None), forget the request digests this call set
        whose request event did not reach Kafka: a 503 is final, so the member may send the
        request otherwise."""
        cause = exc.__cause__ if isinstance(exc, ProblemError) else exc
        stored = {d.event_id for d in cause.stored} if isinstance(cause, PublishError) else set()
        unsent = {rid: sha for rid, (ids, sha) in claimed.items() if not ids & stored}
        try:
            await forget_requests(self._pool, principal.institution, unsent)
        except Exception:
            log.exception("could not forget %d referral requests", len(unsent))

    async def _claim_referrals(
        self, principal: Principal, events: Sequence[Event], fresh: list[Event], batch: bool
    ) -> dict[UUID, tuple[frozenset[UUID], bytes]]:
        """409 for a new request of a referral id another institution requested first, or that
        was requested already with other content (the board applies the first request only)."""
        requests: dict[UUID, set[bytes]] = {}
        claimed = {id(e) for e in fresh if isinstance(e, ReferralRequested)}
        for e in fresh:
            if isinstance(e, ReferralRequested):
                requests.setdefault(e.referral_id, set()).add(request_digest(e))
        if not requests:
            return {}
        refused = await claim_requests(self._pool, principal.institution, requests)
        if refused.of_others:
            taken, kind = refused.of_others, "referral-of-another-institution"
            detail = "another institution requested these referral ids first"
            why = "this referral id was requested by another institution"
        elif refused.changed:
            taken, kind = refused.changed, "referral-already-requested"
            detail = (
                "these referral ids were requested already with other content; a request is"
                " never changed: cancel the referral and request a new referral id"
            )
            why = "this referral id was requested with other content (receiver, urgency, …)"
        else:  # the events of each id this call claimed, and its request's digest
            return {
                rid: (
                    frozenset(
                        e.envelope.event_id
                        for e in fresh
                        if isinstance(e, ReferralRequested) and e.referral_id == rid
                    ),
                    sha,
                )
                for rid, sha in refused.claimed.items()
            }
        # Nothing is published: the ids this call claimed asked nothing either.
        await self._forget_unpublished(
            principal, {rid: (frozenset(), sha) for rid, sha in refused.claimed.items()}, None
        )
        raise ProblemError(
            409,
            "Conflict",
            f"{detail}; nothing was published",
            kind=kind,
            errors=[
                _located(i if batch else None, why, "referral_id")
                for i, e in enumerate(events)
                if id(e) in claimed and e.referral_id in taken  # type: ignore[attr-defined]
            ],
        )

    async def _reserve(
        self,
        fresh: list[Event],
        digests: list[bytes],
        first: dict[UUID, int],
        batch: bool,
        known: Recorded,
    ) -> tuple[list[Event], Recorded]:
        """Reserve the ids of `fresh`: those this request now holds (to publish), and the records
        of those another request published meanwhile with the same content (to replay). Another
        request's reservation is waited for (its publish takes milliseconds), whatever its
        content: 409 once it holds other content published (or lapsed: perhaps published), taken
        once released, and 503 if it is neither within the wait (saying which of the request's
        events are stored: `known` and those replayed). While it waits, this request
        holds none of its ids: two requests resending overlapping batches would otherwise each
        hold what the other waits for, and both answer 503 with Kafka fine."""
        wanted = {e.envelope.event_id: e for e in fresh}
        ours: set[UUID] = set()
        others: Recorded = {}
        deadline = time.monotonic() + self._wait_s
        pause = 0.005
        try:
            while True:
                rows = [
                    (eid, digests[first[eid]], e.envelope.source)
                    for eid, e in wanted.items()
                    if eid not in others
                ]
                taken, seen = await self._reserve_rows(rows)
                ours |= taken
                clashes = {
                    eid: held.delivery is None
                    for eid, held in seen.items()
                    if held.digest != digests[first[eid]]
                    and (held.delivery is not None or held.lapsed)
                }
                if clashes:
                    raise _id_conflict(
                        [
                            _published_otherwise(first[eid] if batch else None, clashes[eid])
                            for eid in sorted(clashes, key=first.__getitem__)
                        ]
                    )
                others.update(
                    {
                        eid: (h.digest, h.delivery)
                        for eid, h in seen.items()
                        if h.delivery is not None
                    }
                )
                if len(ours) + len(others) == len(wanted):
                    return [e for eid, e in wanted.items() if eid in ours], others
                busy = wanted.keys() - ours - others.keys()
                # All are asked for again after the pause; forgotten first, so that a release
                # is never repeated after another request may have reserved them.
                given_up, ours = ours, set()
                await self._release(given_up)
                if time.monotonic() + pause > deadline:
                    raise self._in_progress(busy, first, {**known, **others})
                await asyncio.sleep(pause)
                pause = min(2 * pause, 0.2)
        except BaseException:  # a conflict, a 503, a failed statement, a cancelled request
            await self._release(ours)
            raise

    def _in_progress(
        self, busy: Set[UUID], first: dict[UUID, int], recorded: Recorded
    ) -> ProblemError:
        """503: `busy` still in progress elsewhere after the wait; `recorded` stored."""
        stored = {eid: rec[1] for eid, rec in recorded.items()}
        return self.unavailable(
            "publish-in-progress",
            f"another request is publishing {len(busy)} of these event ids; {len(stored)} of"
            f" {len(first)} events are stored, retry the others later with the same event ids",
            [stored[eid] for eid in first if eid in stored],
            {
                eid: "another request is publishing this event_id"
                if eid in busy
                else "not published while others of the request were in progress"
                for eid in first
                if eid not in stored
            },
        )

    async def _reserve_rows(self, rows: list[Wanted]) -> Reserved:
        if len(rows) > INLINE_EVENTS:  # a batch is a group already
            return (await self._reserve_all([rows]))[0]
        return await self._reservations(rows)

    async def _reserve_all(self, requests: list[list[Wanted]]) -> list[Reserved]:
        """RESERVE for every request of a group in one statement (each id once)."""
        unique: dict[UUID, Wanted] = {}
        for wanted in requests:
            for w in wanted:  # the first request that wants an id reserves it, with its content
                unique.setdefault(w[0], w)
        columns = [list(c) for c in zip(*unique.values(), strict=True)] or [[], [], []]
        async with self._pool.connection() as conn:
            cursor = await conn.execute(RESERVE, [*columns, self._stale_s, self._stale_s])
            rows = await cursor.fetchall()
        return reservation_shares(requests, rows)

    async def _release(self, event_ids: Iterable[UUID]) -> None:
        """Give up reservations of events that were not published (rare paths only); if this
        fails, they lapse after the stale time."""
        ids = list(event_ids)
        if not ids:
            return
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM gateway_published_events"
                    " WHERE event_id = ANY(%b::uuid[]) AND kafka_offset IS NULL",
                    (ids,),
                )
        except Exception:
            log.exception("could not release %d reservations", len(ids))

    async def _authorise(
        self,
        principal: Principal,
        events: Sequence[Event],
        batch: bool,
        channel: str,
        client: str | None,
    ) -> None:
        refusals = [
            (i, e, why)
            for i, e in enumerate(events)
            if (why := principal.may_publish(e)) is not None
        ]
        if refusals:
            await self._record_refusal(
                principal, [(e, why) for _, e, why in refusals], channel, client
            )
            refused = [
                _located(i if batch else None, why, "envelope", "source") for i, _, why in refusals
            ]
            raise ProblemError(
                403,
                "Forbidden",
                "this credential may not publish some of these events; nothing was published",
                kind="not-your-institution",
                errors=refused,
            )

    async def _publish(
        self,
        fresh: list[Event],
        digests: list[bytes],
        first: dict[UUID, int],
        known: dict[UUID, Delivery],
        batch: bool,
    ) -> list[Delivery]:
        try:
            stored = await self.deliver(fresh)
        except UnpublishableError as exc:
            # Raised before the first produce: nothing of the request is in Kafka.
            await self._release(e.envelope.event_id for e in fresh)
            raise ProblemError(
                422,
                "Unprocessable content",
                "some events cannot be written to Kafka; nothing was published",
                kind="event-too-large",
                errors=[
                    _numbered(first[fresh[i].envelope.event_id], len(digests), why, batch)
                    for i, why in sorted(exc.errors.items())
                ],
            ) from exc
        except PublishError as exc:
            await self._record(exc.stored, fresh, digests, first)
            # A retry with the same id must be able to publish what failed (one that timed out
            # may be in Kafka after all: then twice, which projections deduplicate).
            await self._release(exc.failed)
            if exc.rejected:
                # Kafka refused these for good: a retry cannot help, so no 503 / Retry-After.
                raise ProblemError(
                    422,
                    "Unprocessable content",
                    f"Kafka refused {len(exc.rejected)} events for good and acknowledged "
                    f"{len(exc.stored) + len(known)} of {len(fresh) + len(known)}",
                    kind="event-rejected-by-kafka",
                    errors=[
                        _located(first[eid] if batch else None, f"Kafka refused it: {why}")
                        for eid, why in exc.failed.items()
                        if eid in exc.rejected
                    ],
                    **settled([*known.values(), *exc.stored], exc.failed),
                ) from exc
            raise self.unavailable(
                "kafka-unavailable",
                f"Kafka acknowledged {len(exc.stored) + len(known)} of "
                f"{len(fresh) + len(known)} events; retry the others with the same event ids",
                [*known.values(), *exc.stored],
                exc.failed,
            ) from exc
        except BaseException:
            # Anything else (a bug, a cancelled request) answers nothing that a retry could
            # replay: the ids must not stay reserved, answering 503 in progress until they lapse.
            await self._release(e.envelope.event_id for e in fresh)
            raise
        await self._record(stored, fresh, digests, first)
        return stored

    def unavailable(
        self, kind: str, detail: str, stored: list[Delivery], failed: Mapping[UUID, str]
    ) -> ProblemError:
        """503 with Retry-After, saying which events are stored and why the others are not
        (after `deliver`: final, nothing of `failed` is delivered later)."""
        return ProblemError(
            503,
            "Service unavailable",
            detail,
            kind=kind,
            headers={"Retry-After": self._retry_after},
            **settled(stored, failed),
        )

    async def _record_refusal(
        self,
        principal: Principal,
        reasons: list[tuple[Event, str]],
        channel: str,
        client: str | None,
    ) -> None:
        """The refused request as one append-only row; the refusal stands even if it fails."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO publish_refusals (refusal_id, refused_at, credential_id,"
                    " institution, role, channel, claimed_sources, event_ids, event_types,"
                    " reason, client_address) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s)",
                    (
                        uuid4(),
                        principal.credential_id,
                        principal.institution,
                        principal.role.value,
                        channel,
                        sorted({e.envelope.source for e, _ in reasons}),
                        [e.envelope.event_id for e, _ in reasons],
                        [e.event_type for e, _ in reasons],
                        "; ".join(sorted({why for _, why in reasons})),
                        client,
                    ),
                )
        except Exception:  # a refusal is answered 403 whatever; losing its row is logged
            log.exception("could not record a refused publish of %s", principal.institution)

    async def look_up(self, event_ids: list[UUID]) -> Known:
        """The record of these ids, for a `submit` that can read it beside another statement."""
        return Known(frozenset(event_ids), await self._recorded(event_ids))

    async def _recorded(self, event_ids: list[UUID]) -> Recorded:
        # A batch is a group already: its statements run at once, beside other requests'.
        if len(event_ids) > INLINE_EVENTS:
            return (await self._select_recorded([event_ids]))[0]
        return await self._lookups(event_ids)

    async def _select_recorded(self, requests: list[list[UUID]]) -> list[Recorded]:
        """What the record knows of each request's ids, in one statement for all of them."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(RECORDED_ROWS_BINARY, (all_ids(requests),))
            rows = await cursor.fetchall()
        return recorded_of(requests, rows)

    async def _record(
        self,
        stored: list[Delivery],
        events: list[Event],
        digests: list[bytes],
        first: dict[UUID, int],
    ) -> None:
        """Remember acknowledged events; a failure here only costs a republish on retry."""
        if not stored:
            return
        sources = {e.envelope.event_id: e.envelope.source for e in events}
        rows = [
            (
                d.event_id,
                digests[first[d.event_id]],
                sources[d.event_id],
                d.topic,
                d.partition,
                d.offset,
            )
            for d in stored
        ]
        try:
            if len(rows) > INLINE_EVENTS:
                await self._insert_records([rows])
            else:
                await self._inserts(rows)
        except Exception:
            # Kafka already has the events, so the answer stays a success; downstream
            # deduplication by event id makes a later republish harmless.
            log.exception("could not record %d published events", len(stored))

    async def _insert_records(self, requests: list[list[Row]]) -> list[None]:
        """Every request's rows in one INSERT (an id recorded already keeps its first row); the
        columns go as binary arrays, a quarter of the client CPU of text ones for 1,000 rows."""
        unique: dict[UUID, Row] = {}
        for rows in requests:
            for row in rows:
                unique.setdefault(row[0], row)
        columns = list(zip(*unique.values(), strict=True))
        async with self._pool.connection() as conn:
            # Fills this request's reservations (a takeover keeps the content, so the digest
            # check is only a guard); a published id keeps its first row.
            await conn.execute(
                "INSERT INTO gateway_published_events AS g"
                " (event_id, content_sha256, source, topic, kafka_partition, kafka_offset)"
                " SELECT * FROM unnest(%b::uuid[], %b::bytea[], %b::text[], %b::text[],"
                " %b::int[], %b::bigint[]) ORDER BY 1 ON CONFLICT (event_id) DO UPDATE SET"
                " topic = EXCLUDED.topic, kafka_partition = EXCLUDED.kafka_partition,"
                " kafka_offset = EXCLUDED.kafka_offset"
                " WHERE g.kafka_offset IS NULL AND g.content_sha256 = EXCLUDED.content_sha256",
                [list(column) for column in columns],
            )
        return [None for _ in requests]


def settled(stored: list[Delivery], failed: Mapping[UUID, str]) -> dict[str, Any]:
    """The `stored` and `failed` members of an answer that is not a success."""
    return {
        "stored": [delivery_json(d) for d in stored],
        "failed": [{"event_id": str(k), "reason": v} for k, v in failed.items()],
    }


def delivery_json(d: Delivery) -> dict[str, object]:
    """Where Kafka stored one event, as answered (202 `deliveries`, 503 `stored`)."""
    return {
        "event_id": str(d.event_id),
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
    }
