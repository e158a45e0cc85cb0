"""The read audit: every read of person-level data is on the audit topic and table first."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastapi import FastAPI, Request
from psycopg.types.json import Jsonb

from events.codec import Codec
from events.publisher import SAFE_PRODUCER_CONFIG
from events.topics import READ_AUDIT_TOPIC
from gateway.principals import Principal
from gateway.problems import ProblemError
from gateway.state import Gateway

SUBJECT = "consortium.audit.ReadAudited"
_COLUMNS = (
    "audit_id, request_id, audited_at, credential_id, institution, role, person_id,"
    " subject_institution, subject_local_id, resource, resource_id, purpose, outcome, reason,"
    " client_address, detail, topic, kafka_partition, kafka_offset"
)
_INSERT = f"INSERT INTO read_audit ({_COLUMNS}) VALUES ({', '.join(['%s'] * 19)})"
Stored = tuple[str, int, int] | str  # (topic, partition, offset) or the error


class Outcome(StrEnum):
    """Whether a read released the data."""

    ALLOWED = "ALLOWED"
    DENIED = "DENIED"
    BREAK_GLASS = "BREAK_GLASS"


@dataclass(frozen=True)
class Subject:
    """Whose data a read touched: a consortium person, a member's local record, or both.

    `NOBODY` is the subject of a denied read of an id that names no one (an unknown referral
    id): recorded like a denied read of an existing item, so the two cannot be told apart."""

    person_id: uuid.UUID | None = None
    institution: str | None = None
    local_id: str | None = None
    nobody: bool = False

    def __post_init__(self) -> None:
        if self.nobody:
            if (self.person_id, self.institution, self.local_id) != (None, None, None):
                raise ValueError("the subject nobody names no person and no local record")
        elif self.person_id is None and self.local_id is None:
            raise ValueError("a subject names a person id or a local patient id")

    def key(self) -> bytes:
        """The audit topic's key: one person's reads stay in order."""
        if self.person_id is not None:
            return str(self.person_id).encode()
        return f"{self.institution or ''}|{self.local_id or ''}".encode()


NOBODY = Subject(nobody=True)


class AuditLog:
    """The audit's own producer, so that audit records never queue behind bulk publishing."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        codec: Codec,
        timeout_s: float,
        kafka: Mapping[str, Any] | None = None,
    ):
        self.topic = READ_AUDIT_TOPIC.name(consortium_id)
        self.timeout_s = timeout_s
        self._codec = codec
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                **(kafka or {}),  # security: the gateway's principal (GatewayConfig.kafka_config)
                **SAFE_PRODUCER_CONFIG,
                "linger.ms": 0,  # a reader waits for this record: send it now
                "delivery.timeout.ms": int(timeout_s * 1000),
            }
        )
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="audit-deliveries", daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    def close(self) -> None:
        """Stop the poll thread (every record written was already acknowledged)."""
        self._stopping.set()
        self._poller.join(10)
        # What is still queued belongs to reads already refused: it must not be sent late.
        self._producer.purge()
        self._producer.poll(0)

    async def write(self, records: Sequence[tuple[bytes, Mapping[str, Any]]]) -> list[Stored]:
        """Produce (key, record) pairs and wait for Kafka's acknowledgement of each."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Stored]] = [loop.create_future() for _ in records]
        for (key, record), future in zip(records, futures, strict=True):
            self._produce(loop, key, self._codec.encode(SUBJECT, record), future)
        await asyncio.wait(futures, timeout=self.timeout_s)
        return [f.result() if f.done() else "no acknowledgement in time" for f in futures]

    def _produce(
        self,
        loop: asyncio.AbstractEventLoop,
        key: bytes,
        value: bytes,
        future: asyncio.Future[Stored],
    ) -> None:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            stored: Stored
            if err is not None:
                stored = err.str()
            else:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                stored = (topic, partition, offset)
            if not loop.is_closed():  # a purge at shutdown may outlive the requests' loop
                loop.call_soon_threadsafe(_resolve, future, stored)

        try:
            self._producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            _resolve(future, str(exc))


def _resolve(future: asyncio.Future[Stored], stored: Stored) -> None:
    if not future.done():
        future.set_result(stored)


def audit_log(app: FastAPI, gateway: Gateway) -> AuditLog:
    """The app's audit producer, created on first use for this gateway."""
    log: AuditLog | None = getattr(app.state, "read_audit", None)
    if log is None or getattr(app.state, "read_audit_gateway", None) is not gateway:
        if log is not None:
            log.close()
        config = gateway.config
        log = AuditLog(
            config.bootstrap_servers,
            config.consortium_id,
            Codec(gateway.catalog),
            config.publish_timeout_s,
            config.kafka_config(),
        )
        app.state.read_audit, app.state.read_audit_gateway = log, gateway
    return log


def close_audit_log(app: FastAPI) -> None:
    """Stop the app's audit producer, if one was started (call at shutdown)."""
    log: AuditLog | None = getattr(app.state, "read_audit", None)
    if log is not None:
        log.close()
        app.state.read_audit = None


def request_id(request: Request) -> uuid.UUID:
    """One id per HTTP request, shared by every audit record the request writes."""
    found: uuid.UUID | None = getattr(request.state, "read_id", None)
    if found is None:
        found = request.state.read_id = uuid.uuid4()
    return found


def _unavailable(detail: str) -> ProblemError:
    return ProblemError(
        503,
        "Service unavailable",
        f"the read could not be audited ({detail}); no data was returned",
        kind="audit-unavailable",
        headers={"Retry-After": "5"},
    )


async def audit(
    request: Request,
    principal: Principal,
    subjects: Sequence[Subject],
    *,
    purpose: str,
    outcome: Outcome = Outcome.ALLOWED,
    reason: str | None = None,
    resource_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record one read of each subject on the audit topic, then in the table; 503 if either fails.

    Await it before the data leaves the gateway, and before answering 403 to a denied read.
    """
    if not subjects:
        return
    if outcome is Outcome.BREAK_GLASS and not reason:
        raise ProblemError(400, "Bad request", "break-glass needs a stated reason")
    if outcome is not Outcome.DENIED and any(s.nobody for s in subjects):
        raise ValueError("only a denied read names nobody: a released read names its subject")
    gateway: Gateway | None = request.app.state.gateway
    if gateway is None:
        raise _unavailable("this gateway was started without Kafka")
    route = request.scope.get("route")
    resource = f"{request.method} {getattr(route, 'path', request.url.path)}"
    now = datetime.now(UTC)
    records = [
        {
            "audit_id": str(uuid.uuid4()),
            "request_id": str(request_id(request)),
            "audited_at": now,
            "credential_id": str(principal.credential_id),
            "institution": principal.institution,
            "role": principal.role.value,
            "person_id": None if s.person_id is None else str(s.person_id),
            "subject_institution": s.institution,
            "subject_local_id": s.local_id,
            "resource": resource,
            "resource_id": resource_id,
            "purpose": purpose,
            "outcome": outcome.value,
            "reason": reason,
            "client_address": request.client.host if request.client else None,
        }
        for s in subjects
    ]
    # Kafka first: the topic is the system of record, and each row names its Kafka twin.
    # A failure after the acknowledgement leaves a record of a read that was then refused:
    # the audit may over-record an attempt, never miss a release (docs/audit.md).
    stored = await audit_log(request.app, gateway).write(
        [(s.key(), r) for s, r in zip(subjects, records, strict=True)]
    )
    failed = [s for s in stored if isinstance(s, str)]
    if failed:
        raise _unavailable(f"Kafka: {failed[0]}")
    rows = [
        (*r.values(), None if detail is None else Jsonb(dict(detail)), *where)
        for r, where in zip(records, stored, strict=True)
        if not isinstance(where, str)
    ]
    try:
        async with (
            gateway.pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            # The pool's sessions skip the WAL flush (gateway/state.py); an audit must not.
            await cur.execute("SET LOCAL synchronous_commit = on")
            await cur.executemany(_INSERT, rows)
    except Exception as exc:  # any failure means the read is not recorded: refuse it
        raise _unavailable(f"table: {type(exc).__name__}") from None
