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
from gateway.hl7.er7 import Message, ParseError, header, parse
from gateway.hl7.mapping import Namespaces, UnsupportedMessage, map_message
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


# MSH-18 (HL7 table 0211 and the names Chinese HIS write there), spaces and hyphens removed.
_GB18030 = ("GB18030", "GBK", "GB2312", "ISOIR58", "CP936")
_UTF8 = ("UNICODEUTF8", "UTF8")
_BOM = b"\xef\xbb\xbf"


def declared_charset(raw: bytes) -> str | None:
    """The codec MSH-18 names ('utf-8' or 'gb18030'), read from the header's bytes (ASCII in
    both); None when absent or another character set."""
    head = raw.lstrip(b"\r\n\x00 \t")
    if len(head) < 8 or not head.startswith(b"MSH"):
        return None
    separator, repetition = head[3:4], head[5:6]
    line = head.split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = line.split(separator)
    if len(fields) < 18:
        return None
    name = fields[17].split(repetition, 1)[0].decode("ascii", errors="replace")
    name = name.upper().replace(" ", "").replace("-", "").replace("_", "")
    if name.startswith(_GB18030):
        return "gb18030"
    return "utf-8" if name in _UTF8 else None


def decode_strictly(raw: bytes) -> tuple[str, str | None]:
    """The text in MSH-18's character set, else the other of UTF-8 and GB 18030 that reads
    it; with the reason when neither does (the text then has U+FFFD for the bad bytes)."""
    declared: str | None = "utf-8"
    if raw.startswith(_BOM):  # a .NET HIS's Encoding.UTF8 writes one before MSH
        raw = raw[len(_BOM) :]
    else:
        declared = declared_charset(raw)
    order = ("gb18030", "utf-8") if declared == "gb18030" else ("utf-8", "gb18030")
    problem: UnicodeDecodeError | None = None
    for codec in order:
        try:
            return raw.decode(codec), None
        except UnicodeDecodeError as exc:
            problem = problem or exc
    assert problem is not None
    named = f"MSH-18 names {declared.upper()}" if declared else "MSH-18 names neither"
    reason = (
        f"the bytes are neither UTF-8 nor GB 18030 ({named}; byte {problem.start}"
        f" is {raw[problem.start : problem.start + 1].hex()})"
    )
    return raw.decode(order[0], errors="replace"), reason


def decode(raw: bytes) -> str:
    """The text in MSH-18's character set (UNICODE UTF-8 or GB 18030, which many Chinese HIS
    still send); without either, UTF-8, else GB 18030; bytes neither reads as U+FFFD."""
    return decode_strictly(raw)[0]


def _parse(er7: str) -> Message:
    """The message, or ParseError (segment separators \r, \n or \r\n all accepted)."""
    return parse(er7)


def _prepare(
    er7: str, checks: Checks | None = None, namespaces: Namespaces | None = None
) -> tuple[Message | None, list[dict[str, Any]] | Answer]:
    """Parse and map in one step (CPU work, run in a thread)."""
    try:
        message = parse(er7)
    except ParseError as exc:
        reason = f"the message cannot be parsed as HL7 v2 ER7: {exc}"
        # A readable MSH still names the message in the ACK (MSA-2), though nothing is mapped.
        readable = header(er7)
        return None, _answer(readable, AckCode.REJECT, [Hl7Error("102", reason)], 400)
    return message, _map(message, (checks or {}).get("membership"), namespaces)


def prepare_bytes(
    raw: bytes, checks: Checks | None = None, namespaces: Namespaces | None = None
) -> tuple[Message | None, list[dict[str, Any]] | Answer]:
    """Decode, parse and map: bytes that no character set reads are AE 102 on MSH-18."""
    er7, undecodable = decode_strictly(raw)
    message, prepared = _prepare(er7, checks, namespaces)
    if undecodable is not None and message is not None:
        error = Hl7Error("102", undecodable, "MSH-18")
        return message, _answer(message, AckCode.ERROR, [error], 422)
    return message, prepared


def _map(
    message: Any, membership: Membership | None = None, namespaces: Namespaces | None = None
) -> list[dict[str, Any]] | Answer:
    """The event drafts of a parsed message, or the ACK that refuses it."""
    try:
        return map_message(message, membership or load_membership(), namespaces)
    except UnsupportedMessage as exc:
        return _answer(message, AckCode.REJECT, [Hl7Error(exc.code, str(exc), exc.where)], 422)
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


def _no_credential(message: Message) -> Answer:
    reason = "MSH-8 (Security) carries no valid gateway credential"
    return _answer(message, AckCode.REJECT, [Hl7Error("207", reason, "MSH-8")], 401)


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
        return _no_credential(message)
    return principal, known


def _msh_alone(raw: bytes) -> Message | None:
    """The MSH segment read from the message's first line of bytes (ASCII in UTF-8 and GB 18030
    alike), without decoding or parsing the rest; None when it cannot be read alone."""
    head = raw.removeprefix(_BOM).lstrip(b"\r\n\x00 \t")
    line = head.split(b"\r", 1)[0].split(b"\n", 1)[0]
    return header(decode(line))


async def handle(
    gateway: Gateway, raw: bytes, principal: Principal | None, client: str | None = None
) -> Answer:
    """Acknowledge one message: AA once Kafka has its events, else AE or AR with ERR segments."""
    checks = request_checks()  # one membership lookup and clock reading for the message
    # Parsing and mapping a usual message takes ~0.1 ms, less than a hop to a worker thread;
    # only a large one leaves the event loop.
    # The ids are derived in the deployment's keyed namespaces (mapping.Namespaces).
    namespaces = gateway.hl7_namespaces
    if principal is None and len(raw) > INLINE_BYTES:
        # A large message is parsed and mapped only for a valid credential: MSH-8 is read from
        # the MSH line alone first (the ids are then looked up by `submit`). A message whose
        # MSH cannot be read alone goes on, and is refused as unparseable or checked below.
        head = _msh_alone(raw)
        if head is not None:
            principal = await gateway.authenticate(text(head.msh.msh_8) or "")
            if principal is None:
                return _no_credential(head)
    if len(raw) <= INLINE_BYTES:
        message, prepared = prepare_bytes(raw, checks, namespaces)
    else:
        message, prepared = await anyio.to_thread.run_sync(prepare_bytes, raw, checks, namespaces)
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
    return await _publish(gateway, message, prepared, principal, known, checks, client)


async def _publish(
    gateway: Gateway,
    message: Message,
    prepared: list[dict[str, Any]],
    principal: Principal,
    known: Known | None,
    checks: Checks,
    client: str | None,
) -> Answer:
    """Validate a mapped message's events and publish them: AA, AE or AR."""
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
