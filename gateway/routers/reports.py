"""De-identified figures for county health bureaus: `GET /v1/reports/...` and their live stream.

Only a bureau-analyst principal reads here. Every answer is made of published records (codes,
levels, windows, counts with their `suppressed` flags): a suppressed count is
`{"value": null, "suppressed": true}`, never 0, and no route adds counts across records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import psycopg
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from events.codec import Codec, DecodeError
from events.membership import CODE_PATTERN, InstitutionLevel, load_membership
from events.topics import REPORTING_TOPICS, REPORTING_VIEWS
from gateway import streams
from gateway.deps import GatewayDep, PrincipalDep
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Principal, Role
from gateway.problems import ProblemError
from gateway.state import Gateway
from gateway.streams import TOO_MANY_STREAMS
from projections.reporting import queries
from projections.reporting.windows import DAY, day_start, local_date

log = logging.getLogger(__name__)


async def bureau_analyst(principal: PrincipalDep) -> Principal:
    """The caller, when it is a bureau analyst; any other role is refused."""
    if principal.role is not Role.BUREAU_ANALYST:
        raise ProblemError(
            403, "Forbidden", f"role {principal.role.value} may not read bureau reports"
        )
    return principal


AnalystDep = Annotated[Principal, Depends(bureau_analyst)]
Grain = Literal["HOUR", "DAY"]
GrainQuery = Annotated[Grain, Query(description="HOUR (UTC hours) or DAY (Asia/Shanghai days).")]
SinceQuery = Annotated[datetime | None, Query(description="Windows starting at or after.")]
UntilQuery = Annotated[datetime | None, Query(description="Windows starting before.")]
DayQuery = Annotated[
    date | None, Query(alias="date", description="One Asia/Shanghai day (instead of a range).")
]
LimitQuery = Annotated[int, Query(ge=1, le=10_000)]

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses={
        400: {**PROBLEM_RESPONSES[400], "description": "Both a date and a since/until range."},
        401: PROBLEM_RESPONSES[401],
        403: {**PROBLEM_RESPONSES[403], "description": "The credential is not a bureau analyst's."},
    },
)


class Records(BaseModel):
    """Published records (or rows picked from them) of one view and grain, in window order."""

    view: str
    grain: str
    records: list[dict[str, Any]] = Field(
        description="Counts are {value, suppressed}; a suppressed count has value null."
    )


class Member(BaseModel):
    """A member institution: its code, name, level and beds (no person)."""

    code: str
    name: str
    level: str
    beds: int


class Level(BaseModel):
    """One level of care and its members."""

    level: str
    members: list[Member]


class Members(BaseModel):
    """The consortium's members by level, and the local days that have figures."""

    consortium_id: str
    levels: list[Level]
    days: list[str]


async def _read(gateway: Gateway, query: queries.Query) -> list[dict[str, Any]]:
    try:
        async with gateway.pool.connection() as conn:
            return await queries.fetch(conn, query)
    except psycopg.errors.UndefinedTable as exc:  # no generation yet: nothing to read
        raise ProblemError(
            503,
            "Service unavailable",
            "the reporting projection has not been built in this database",
            headers={"Retry-After": "30"},
        ) from exc


def _range(
    day: date | None, since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    if day is None:
        return since, until
    if since is not None or until is not None:
        raise ProblemError(400, "Bad request", "give either date or since/until, not both")
    try:
        start = day_start(day)
        return start, start + DAY
    except OverflowError as exc:  # 0001-01-01 or 9999-12-31 in another zone
        raise ProblemError(400, "Bad request", f"no report window on {day}") from exc


async def _figures(
    gateway: Gateway,
    view: str,
    scope: str | None,
    grain: Grain,
    day: date | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    start, end = _range(day, since, until)
    return await _read(gateway, queries.figures_query(view, scope, grain, start, end, limit))


async def _last_day(gateway: Gateway, day: date | None) -> date | None:
    if day is not None:
        _range(day, None, None)  # a day that has windows at all
        return day
    days = await _read(gateway, queries.days_query())
    return date.fromisoformat(days[-1]["local_date"]) if days else None


@router.get("/members", summary="Members by level, and the days that have figures")
async def members(request: Request, gateway: GatewayDep, _: AnalystDep) -> Members:
    """The dashboard's overview: every member institution by level of care."""
    membership = load_membership()
    days = await _read(gateway, queries.days_query())
    return Members(
        consortium_id=request.app.state.consortium_id,
        levels=[
            Level(
                level=level.value,
                members=[
                    Member(code=i.code, name=i.name, level=level.value, beds=i.beds)
                    for i in membership.at_level(level)
                ],
            )
            for level in InstitutionLevel
        ],
        days=[d["local_date"] for d in days],
    )


@router.get("/consortium", summary="The consortium's figures per hour or day")
async def consortium(
    gateway: GatewayDep,
    _: AnalystDep,
    grain: GrainQuery = "DAY",
    day: DayQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: LimitQuery = 1_000,
) -> Records:
    """Every consortium-wide record with a window in the range, oldest first."""
    rows = await _figures(gateway, "consortium", None, grain, day, since, until, limit)
    return Records(view="consortium", grain=grain, records=rows)


@router.get("/levels", summary="Figures per level of care per hour or day")
async def levels(
    gateway: GatewayDep,
    _: AnalystDep,
    grain: GrainQuery = "DAY",
    level: Annotated[InstitutionLevel | None, Query()] = None,
    day: DayQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: LimitQuery = 1_000,
) -> Records:
    """Every level's (or one level's) records with a window in the range, oldest first."""
    scope = level.value if level else None
    rows = await _figures(gateway, "levels", scope, grain, day, since, until, limit)
    return Records(view="levels", grain=grain, records=rows)


@router.get("/institutions", summary="Figures per member institution per hour or day")
async def institutions(
    gateway: GatewayDep,
    _: AnalystDep,
    grain: GrainQuery = "DAY",
    institution: Annotated[str | None, Query(pattern=CODE_PATTERN.pattern)] = None,
    day: DayQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: LimitQuery = 1_000,
) -> Records:
    """Every institution's (or one institution's) records in the range, oldest first."""
    rows = await _figures(gateway, "institutions", institution, grain, day, since, until, limit)
    return Records(view="institutions", grain=grain, records=rows)


@router.get("/ratios", summary="The policy ratios per hour or day")
async def ratios(
    gateway: GatewayDep,
    _: AnalystDep,
    grain: GrainQuery = "DAY",
    day: DayQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: LimitQuery = 1_000,
) -> Records:
    """Share of referrals going down, of visits at township and village level, admitted within
    the county."""
    rows = await _figures(gateway, "consortium", None, grain, day, since, until, limit)
    return Records(view="consortium", grain=grain, records=queries.policy_ratios(rows))


@router.get("/overdue", summary="Overdue referrals by receiving institution, for one day")
async def overdue(gateway: GatewayDep, _: AnalystDep, day: DayQuery = None) -> Records:
    """Referrals requested that day and overdue at their receiver (default: the latest day)."""
    chosen = await _last_day(gateway, day)
    rows = [] if chosen is None else await _read(gateway, queries.day_query("institutions", chosen))
    return Records(view="institutions", grain="DAY", records=queries.overdue_by_institution(rows))


@router.get(
    "/referral-flow",
    summary="Referrals by the sender's level: up, down, lateral, and to each destination level",
)
async def referral_flow(
    gateway: GatewayDep, _: AnalystDep, grain: GrainQuery = "DAY", day: DayQuery = None
) -> Records:
    """Each level's and the consortium's requested referrals by direction and by destination
    level (`to_<level>`: the from-level x to-level matrix), for one day."""
    chosen = await _last_day(gateway, day)
    rows: list[dict[str, Any]] = []
    if chosen is not None:
        for view in ("levels", "consortium"):
            rows += await _read(gateway, queries.day_query(view, chosen, grain))
    return Records(view="levels", grain=grain, records=queries.referral_flow(rows))


class MemberDay(BaseModel):
    """Per-member counts of one Asia/Shanghai day, from the day's published records."""

    local_date: date
    since: datetime
    until: datetime


class RepeatTests(MemberDay):
    """Orders of recognised tests on one day in disjoint parts: not a possible repeat, a
    possible repeat whose prior result was reused (the order cancelled), one not reused."""

    consortium: dict[str, Any] = Field(
        description="not_flagged, flagged_reused, flagged_not_reused: each {value, suppressed}"
        " (null before Figures v4)."
    )
    institutions: list[dict[str, Any]] = Field(
        description="Per ordering member: institution, institution_level, and the three counts."
    )


class Transfers(MemberDay):
    """Transfers between members admitted on one day, and those without a referral."""

    consortium: dict[str, Any] = Field(
        description="referred, unreferred: each {value, suppressed} (null before Figures v2)."
    )
    institutions: list[dict[str, Any]] = Field(
        description="Per member: institution, institution_level, received_referred,"
        " received_unreferred, sent_referred, sent_unreferred (each {value, suppressed})."
    )


async def _member_day(
    gateway: Gateway,
    day: date | None,
    pick: Callable[[list[dict[str, Any]], list[dict[str, Any]]], dict[str, Any]],
) -> dict[str, Any]:
    """The day's (default: today) consortium and institution records, picked by `pick`."""
    chosen = day or local_date(datetime.now(UTC))
    since, until = _range(chosen, None, None)
    assert since is not None and until is not None
    consortium = await _read(gateway, queries.day_query("consortium", chosen))
    institutions = await _read(gateway, queries.day_query("institutions", chosen))
    return {"local_date": chosen, "since": since, "until": until, **pick(consortium, institutions)}


@router.get(
    "/repeat-tests",
    summary="Repeat tests flagged and avoided (mutual recognition), for one day",
)
async def repeat_tests(gateway: GatewayDep, _: AnalystDep, day: DayQuery = None) -> RepeatTests:
    """Orders of a test in the recognition table placed that Asia/Shanghai day (default:
    today), split into those repeating no other member's still-valid result, repeats then
    cancelled (result reused) and repeats not cancelled: the fields of the day's published
    records (the reporting projection counts them from the record's derived checks), so
    suppressed exactly as on the bureau topics; only these disjoint parts."""
    return RepeatTests(**await _member_day(gateway, day, queries.repeats_of_day))


@router.get("/transfers", summary="Transfers between members and unreferred ones, for one day")
async def transfers(gateway: GatewayDep, _: AnalystDep, day: DayQuery = None) -> Transfers:
    """The same person discharged at one member and admitted at another within 48 hours,
    admitted that Asia/Shanghai day (default: today), received and sent per member, with and
    without a referral: the fields of the day's published records (the reporting projection
    counts them from the derived transfers), so suppressed exactly as on the bureau topics."""
    return Transfers(**await _member_day(gateway, day, queries.transfers_of_day))


# --- the live stream ---------------------------------------------------------------------
# Every change reaches the reporting topics (the relay's outbox), so the stream reads them
# rather than polling PostgreSQL: a bureau's dashboard and a bureau's own Kafka client then
# see the same messages, and the gateway keeps no state (a reconnect names its positions).
KEEPALIVE_S = 10.0
STREAM_BATCH = 100  # figures sent after one reading of the credential, at most
POSITIONS_PREFIX = "p1:"


class _Positions:
    """The next offset of every reporting partition, as an SSE event id ('p1:3.0.12...')."""

    def __init__(self, partitions: list[tuple[str, int]], offsets: dict[tuple[str, int], int]):
        self.partitions, self.offsets = partitions, offsets

    @property
    def event_id(self) -> str:
        return POSITIONS_PREFIX + ".".join(str(self.offsets[tp]) for tp in self.partitions)

    @staticmethod
    def parse(
        event_id: str | None, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The offsets a Last-Event-ID names; none when it does not fit these partitions."""
        if not event_id or not event_id.startswith(POSITIONS_PREFIX):
            return {}
        parts = event_id.removeprefix(POSITIONS_PREFIX).split(".")
        if len(parts) != len(partitions) or not all(p.isascii() and p.isdigit() for p in parts):
            return {}
        return {tp: int(p) for tp, p in zip(partitions, parts, strict=True)}


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """Decoded Avro as the REST routes show it: instants as ISO text (as PostgreSQL keeps them)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


class _Tail:
    """Reads the reporting topics in a thread of its own and hands each change to the loop."""

    def __init__(self, gateway: Gateway, last_event_id: str | None) -> None:
        self._gateway, self._last = gateway, last_event_id
        self._loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue(maxsize=1_000)
        self.stop = threading.Event()
        self.started: asyncio.Future[str] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="reports-stream", daemon=True)
        self._thread.start()

    def _hand(self, item: tuple[str, str, dict[str, Any]]) -> bool:
        """Put one item on the queue; waits while the client is slow, gives up when stopped
        or when the loop has gone (the stream ended while this thread held a message)."""
        put = self.queue.put(item)
        try:
            future = asyncio.run_coroutine_threadsafe(put, self._loop)
        except RuntimeError:  # the loop is closed: nobody reads the queue any more
            put.close()  # never awaited: say so to nobody, not as a warning
            return False
        while not self.stop.is_set():
            try:
                future.result(timeout=0.5)
                return True
            except TimeoutError:
                continue
        future.cancel()
        return False

    def _run(self) -> None:
        config = self._gateway.config
        codec = Codec(self._gateway.catalog)
        consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                **config.kafka_config(),
                # Positions travel in the SSE ids, not in Kafka: the group is only a label.
                "group.id": f"{config.consortium_id}.reports-stream.{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            positions = self._assign(consumer, config.consortium_id)
            self._loop.call_soon_threadsafe(self.started.set_result, positions.event_id)
            while not self.stop.is_set():
                for message in consumer.consume(100, timeout=0.5):
                    topic, partition, offset = (
                        message.topic(),
                        message.partition(),
                        message.offset(),
                    )
                    value = message.value()
                    if message.error() or topic is None or partition is None or offset is None:
                        continue
                    tp = (topic, partition)
                    positions.offsets[tp] = offset + 1
                    try:
                        record = codec.decode(value or b"").record
                    except DecodeError:
                        log.warning("undecodable message on %s at %s", tp, message.offset())
                        continue
                    if not self._hand((positions.event_id, record["view"], _jsonable(record))):
                        return
        except Exception as exc:  # the stream ends; the client reconnects
            log.exception("reports stream failed")
            if not self.started.done():
                self._loop.call_soon_threadsafe(self.started.set_exception, exc)
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer, consortium_id: str) -> _Positions:
        partitions: list[tuple[str, int]] = []
        for view in REPORTING_VIEWS:
            topic = REPORTING_TOPICS[view].name(consortium_id)
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {topic}: {meta.error}")
            partitions += [(topic, p) for p in sorted(meta.partitions)]
        offsets = _Positions.parse(self._last, partitions)
        if not offsets:  # a new stream starts at the end: what lands from now on
            for t, p in partitions:
                tp = TopicPartition(t, p, OFFSET_END)
                offsets[(t, p)] = int(consumer.get_watermark_offsets(tp, timeout=10)[1])
        consumer.assign([TopicPartition(t, p, offsets[(t, p)]) for t, p in partitions])
        return _Positions(partitions, offsets)


def _event(name: str, event_id: str, data: Any) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\nid: {event_id}\ndata: {body}\n\n".encode()


async def _changes(tail: _Tail, gateway: Gateway, principal: Principal) -> AsyncIterator[bytes]:
    try:
        position = tail.started.result()
        yield b"retry: 2000\n\n" + _event("ready", position, {})
        while True:
            taken: list[tuple[str, str, dict[str, Any]]] = []
            try:
                taken.append(await asyncio.wait_for(tail.queue.get(), KEEPALIVE_S))
                while len(taken) < STREAM_BATCH and not tail.queue.empty():
                    taken.append(tail.queue.get_nowait())
            except TimeoutError:
                pass
            # The credential is read after the figures were taken and before any is sent (as
            # the referral stream does every poll): a figure taken after a revocation
            # committed is never sent, and an idle stream ends at its next keepalive.
            async with gateway.pool.connection() as conn:
                revoked = await streams.revoked(conn, principal)
            if revoked is not None:
                yield _event("error", position, revoked)  # resuming from it misses nothing
                return
            if not taken:
                yield b": keepalive\n\n"  # a gone client is noticed when this write fails
            for position, view, record in taken:
                yield _event("figures", position, {"view": view, "record": record})
    finally:
        tail.stop.set()


@router.get(
    "/stream",
    summary="Every change of a figure as it lands (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        429: TOO_MANY_STREAMS,
    },
)
async def stream(
    gateway: GatewayDep,
    principal: AnalystDep,
    last_event_id: Annotated[str | None, Header(max_length=4_096)] = None,
) -> StreamingResponse:
    """`ready`, then one `figures` event per changed record (`{view, record}`); each id holds
    the stream's positions, so a reconnect with Last-Event-ID misses nothing. A revoked
    credential ends the stream with an `error` event (a 401 problem body), nothing after it."""
    slot = gateway.streams.take(principal)  # 429 when the gateway or the credential is full
    tail = _Tail(gateway, last_event_id)
    try:
        await asyncio.wait_for(asyncio.shield(tail.started), 30)
    except BaseException as exc:
        tail.stop.set()
        slot.release()
        if not isinstance(exc, Exception):
            raise
        raise ProblemError(
            503,
            "Service unavailable",
            "the reporting topics cannot be read now",
            headers={"Retry-After": "5"},
        ) from exc
    return StreamingResponse(
        slot.around(_changes(tail, gateway, principal)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
