"""One HL7 v2 message in, one ACK out: parse, authenticate, map, validate, publish."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio.to_thread

from events.envelope import Event
from events.membership import Membership, load_membership
from events.validation import Checks
from gateway.config import INLINE_BYTES
from gateway.hl7.ack import AckCode, Hl7Error, build_ack
from gateway.hl7.er7 import Message, ParseError, parse
from gateway.hl7.mapping import UnsupportedMessage, map_message
from gateway.hl7.values import Hl7ValueError, text
from gateway.ingest import Known
from gateway.parsing import parse_one, request_checks
from gateway.principals import Principal
from gateway.problems import ProblemError
from gateway.state import Gateway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The ACK text, its code, and the HTTP status that goes with it over HTTP."""

    ack: str
    code: AckCode
    http_status: int


def decode(raw: bytes) -> str:
    """UTF-8 (MSH-18 UNICODE UTF-8), else GB 18030, which many Chinese HIS still send."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def _parse(er7: str) -> Message:
    """The message, or ParseError (segment separators \r, \n or \r\n all accepted)."""
    return parse(er7)


def _prepare(
    er7: str, checks: Checks | None = None
) -> tuple[Message | None, list[dict[str, Any]] | Answer]:
    """Parse and map in one step (CPU work, run in a thread)."""
    try:
        message = parse(er7)
    except ParseError as exc:
        reason = f"the message cannot be parsed as HL7 v2 ER7: {exc}"
        return None, _answer(None, AckCode.REJECT, [Hl7Error("102", reason)], 400)
    return message, _map(message, (checks or {}).get("membership"))


def _map(message: Any, membership: Membership | None = None) -> list[dict[str, Any]] | Answer:
    """The event drafts of a parsed message, or the ACK that refuses it."""
    try:
        return map_message(message, membership or load_membership())
    except UnsupportedMessage as exc:
        return _answer(message, AckCode.REJECT, [Hl7Error("200", str(exc), "MSH-9")], 422)
    except Hl7ValueError as exc:
        return _answer(message, AckCode.ERROR, [Hl7Error(exc.code, str(exc), exc.where)], 422)
    except Exception as exc:
        log.exception("HL7 mapping failed")
        reason = f"the message could not be mapped: {type(exc).__name__}"
        return _answer(message, AckCode.ERROR, [Hl7Error("207", reason)], 422)


def _draft_ids(drafts: list[dict[str, Any]]) -> list[UUID]:
    """The event ids the mapping gave the drafts (uuid5 strings, see mapping.py)."""
    return [UUID(str(draft["envelope"]["event_id"])) for draft in drafts]


def _answer(message: Any, code: AckCode, errors: list[Hl7Error], status: int) -> Answer:
    return Answer(build_ack(message, code, errors), code, status)


def _validate(message: Any, drafts: list[dict[str, Any]], checks: Checks) -> list[Event] | Answer:
    events: list[Event] = []
    errors: list[Hl7Error] = []
    for index, draft in enumerate(drafts):
        event, problems = parse_one(draft, (index,), checks)
        errors.extend(
            Hl7Error("102", f"{draft['envelope']['event_type']} {e.path}: {e.detail}")
            for e in problems
        )
        if event is not None:
            events.append(event)
    if errors:
        return _answer(message, AckCode.ERROR, errors, 422)
    return events


async def _mllp_credential(
    gateway: Gateway, message: Message, prepared: list[dict[str, Any]] | Answer
) -> tuple[Principal, Known] | Answer:
    """MLLP has no HTTP header: the credential travels in MSH-8 (Security). Its check and the
    lookup of the message's event ids are independent reads: one statement for both. Without
    a valid credential the sender learns nothing of the membership or the contracts."""
    token = text(message.msh.msh_8) or ""
    ids = [] if isinstance(prepared, Answer) else _draft_ids(prepared)
    principal, known = await gateway.authenticate_and_look_up(token, ids)
    if principal is None:
        reason = "MSH-8 (Security) carries no valid gateway credential"
        return _answer(message, AckCode.REJECT, [Hl7Error("207", reason, "MSH-8")], 401)
    return principal, known


async def handle(
    gateway: Gateway, raw: bytes, principal: Principal | None, client: str | None = None
) -> Answer:
    """Acknowledge one message: AA once Kafka has its events, else AE or AR with ERR segments."""
    er7 = decode(raw)
    checks = request_checks()  # one membership lookup and clock reading for the message
    # Parsing and mapping a usual message takes ~0.1 ms, less than a hop to a worker thread;
    # only a large one leaves the event loop.
    if len(raw) <= INLINE_BYTES:
        message, prepared = _prepare(er7, checks)
    else:
        message, prepared = await anyio.to_thread.run_sync(_prepare, er7, checks)
    known: Known | None = None
    # Over MLLP the credential is checked before any mapping error is told; a text that is not
    # HL7 (no message) is refused first, since MSH-8 cannot be read from it.
    if principal is None and message is not None:
        authenticated = await _mllp_credential(gateway, message, prepared)
        if isinstance(authenticated, Answer):
            return authenticated
        principal, known = authenticated
    if isinstance(prepared, Answer):
        return prepared
    assert message is not None and principal is not None
    validated = _validate(message, prepared, checks)
    if isinstance(validated, Answer):
        return validated
    try:
        await gateway.ingest.submit(
            principal, validated, batch=False, channel="hl7", client=client, known_ahead=known
        )
    except ProblemError as exc:
        details = [e.detail for e in exc.extensions.get("errors", [])] or [exc.detail or exc.title]
        if exc.status == 503:
            return _answer(message, AckCode.REJECT, [Hl7Error("207", exc.detail or exc.title)], 503)
        code = "205" if exc.status == 409 else "207"
        return _answer(message, AckCode.ERROR, [Hl7Error(code, d) for d in details], exc.status)
    return _answer(message, AckCode.ACCEPT, [], 200)
