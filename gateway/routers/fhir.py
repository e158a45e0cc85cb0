"""The FHIR R4 read API of the shared record: Patient, $everything, searches by patient.

Every read of a person is audited (gateway.audit) before anything leaves, denied reads too,
with its AuditEvent shape in the audit row. Errors are OperationOutcome (application/fhir+json).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio.to_thread
import psycopg
import psycopg_pool
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from gateway.audit import Outcome, Subject, audit
from gateway.deps import GatewayDep, PrincipalDep
from gateway.fhir import reads
from gateway.fhir.access import BadReaderError, Reader, desk_refusal, reader_of, refusal
from gateway.fhir.audit_event import ReadFacts, audit_event
from gateway.fhir.bundle import DEFAULT_COUNT, MAX_COUNT, InvalidCursorError, page, searchset
from gateway.fhir.capability import SEARCHABLE, capability_statement
from gateway.fhir.mapped import Mapped
from gateway.fhir.outcome import operation_outcome
from gateway.fhir.patient import patient_resource
from gateway.fhir.record import resources_of
from gateway.fhir.systems import Json
from gateway.principals import Role
from gateway.problems import ProblemError

FHIR_JSON = "application/fhir+json"
log = logging.getLogger(__name__)
PATIENT_FIRST = datetime(9999, 12, 31, tzinfo=UTC)  # the Patient leads $everything's first page


class FhirResponse(JSONResponse):
    """A FHIR resource as application/fhir+json (UTF-8, Chinese text unescaped)."""

    media_type = FHIR_JSON


def fhir_error(
    status: int, diagnostics: str, headers: dict[str, str] | None = None, code: str | None = None
) -> Response:
    """An OperationOutcome answer."""
    body = operation_outcome(status, diagnostics, code)
    return FhirResponse(body, status_code=status, headers=headers)


class FhirIssueError(ProblemError):
    """An error answered as an OperationOutcome with a given issue code."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(status, code, diagnostics)
        self.code = code


def _known_error(exc: Exception) -> Response | None:
    """The OperationOutcome of an error the API expects, None for any other."""
    if isinstance(exc, ProblemError):
        code = exc.code if isinstance(exc, FhirIssueError) else None
        return fhir_error(exc.status, exc.detail or exc.title, exc.headers, code)
    if isinstance(exc, RequestValidationError):
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return fhir_error(400, where or "invalid request")
    if isinstance(exc, HTTPException):
        return fhir_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return fhir_error(503, "the shared record is not built yet", {"Retry-After": "30"})
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return fhir_error(503, "the record database does not answer", {"Retry-After": "5"})
    return None


class FhirRoute(APIRoute):
    """A route whose errors, its dependencies' included, are OperationOutcomes, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every error is answered as FHIR
                known = _known_error(exc)
                if known is not None:
                    return known
                # Never echo the exception: it may carry patient data from the request.
                log.exception("unexpected error answering %s %s", request.method, request.url.path)
                return fhir_error(500, "internal server error")

        return answer


# What `_format` and Accept may ask for: FHIR JSON under its names (R4 http.html#mime-type;
# `application/fhir json` is `application/fhir+json` sent unencoded in a query string).
_JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
)
_JSON_RANGES = _JSON_FORMATS | {"*/*", "application/*"}


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower().replace(" ", "+")


def _param(media_range: str, wanted: str) -> str | None:
    for param in media_range.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == wanted:
            return value.strip().strip('"')
    return None


def _quality(media_range: str) -> float:
    given = _param(media_range, "q")
    try:
        return 1.0 if given is None else float(given)
    except ValueError:
        return 0.0


def _acceptable(media_range: str) -> bool:
    """A JSON range at q > 0 whose fhirVersion (the R4 MIME parameter), if any, is R4's."""
    version = _param(media_range, "fhirversion")
    return (
        _media(media_range) in _JSON_RANGES
        and _quality(media_range) > 0
        and version in (None, "4.0", "4.0.1")
    )


async def json_only(request: Request) -> None:
    """406 unless the request accepts FHIR JSON (`_format` overrides Accept); this server
    serves no XML, Turtle or HTML."""
    formats = request.query_params.getlist("_format")
    if formats:
        refused = [f for f in formats if _media(f) not in _JSON_FORMATS]
        if refused:
            raise FhirIssueError(
                406, "not-supported", f"_format {refused[0]!r}: this server serves FHIR JSON only"
            )
        return
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return
    ranges = [r for r in accept.split(",") if r.strip()]
    if not any(_acceptable(r) for r in ranges):
        raise FhirIssueError(
            406,
            "not-supported",
            f"Accept {accept!r}: this server serves FHIR R4 (4.0) JSON only"
            " (application/fhir+json)",
        )


router = APIRouter(
    prefix="/fhir", tags=["fhir"], route_class=FhirRoute, dependencies=[Depends(json_only)]
)

# More than MAX_COUNT is served as MAX_COUNT ("the server ... cannot return more", R4 search).
CountQuery = Annotated[int, Query(alias="_count", ge=1, description="entries per page")]
CursorQuery = Annotated[
    str | None, Query(alias="_cursor", description="opaque: follow the Bundle's next link")
]


PurposeHeader = Annotated[str | None, Header(description="TREAT (default), ETREAT, COC")]


async def current_reader(
    principal: PrincipalDep,
    x_purpose_of_use: Annotated[
        str | None, Header(description="TREAT (default), ETREAT, COC")
    ] = None,
    x_break_glass: Annotated[
        str | None, Header(description="break-glass: the stated reason (percent-encoded UTF-8)")
    ] = None,
) -> Reader:
    """The reading principal with its purpose and break-glass reason."""
    try:
        return reader_of(principal, x_purpose_of_use, x_break_glass)
    except BadReaderError as exc:
        raise ProblemError(400, "Bad request", str(exc)) from None


ReaderDep = Annotated[Reader, Depends(current_reader)]


def _person_id(value: str) -> str:
    """A person id from a path or a `patient` reference (`id` or `Patient/id`); 404 otherwise."""
    raw = value.removeprefix("Patient/")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ProblemError(404, "Not found", f"no Patient {value!r}") from None


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


# Parameters every FHIR interaction may carry that are not search parameters.
_GENERAL = frozenset({"_format"})


def _used(request: Request, names: Collection[str]) -> list[tuple[str, str]]:
    """The query's parameters this search uses, in order (for its links).

    Others are ignored, as R4 search says a server SHOULD, and left out of the links (the self
    link SHALL say what was used); with `Prefer: handling=strict` they are a 400. A used
    parameter given twice is a 400. Checked before anything is read or audited."""
    query = request.query_params
    twice = sorted({n for n in query if n in names and len(query.getlist(n)) > 1})
    if twice:
        raise FhirIssueError(400, "invalid", f"parameter {twice[0]!r} given more than once")
    unknown = list(dict.fromkeys(n for n in query if n not in names and n not in _GENERAL))
    prefer = request.headers.get("prefer", "")
    strict = any(p.strip().replace(" ", "").lower() == "handling=strict" for p in prefer.split(","))
    if unknown and strict:
        listed = ", ".join(repr(n) for n in unknown)
        raise FhirIssueError(
            400, "not-supported", f"unsupported parameters (Prefer: handling=strict): {listed}"
        )
    return [(n, v) for n, v in query.multi_items() if n in names or n in _GENERAL]


async def _audit(
    request: Request,
    reader: Reader,
    person_id: str,
    read: reads.RecordRead | None,
    *,
    interaction: str,
    resource_id: str,
    outcome: str,
    reason: str | None,
    returned: int = 0,
) -> None:
    """The read audit row of this read, with its AuditEvent; raises 503 if it cannot be written."""
    principal = reader.principal
    facts = ReadFacts(
        recorded=datetime.now(UTC),
        interaction=interaction,
        path=request.url.path,
        query=request.url.query,
        credential_id=str(principal.credential_id),
        institution=principal.institution,
        role=principal.role.value,
        client_address=request.client.host if request.client else None,
        purpose=reader.purpose_code,
        outcome=outcome,
        reason=reason,
        person_id=person_id,
        grants=read.verdict.grants if read else (),
        returned=returned,
    )
    await audit(
        request,
        principal,
        [Subject(person_id=uuid.UUID(person_id))],
        purpose=reader.purpose_code,
        outcome=Outcome(outcome),
        reason=reason,
        resource_id=resource_id,
        detail=audit_event(facts),
    )


async def _read(
    request: Request,
    gateway: GatewayDep,
    reader: Reader,
    person_id: str,
    *,
    interaction: str,
    resource_id: str,
    desk: bool = False,
) -> reads.RecordRead:
    """What the reader may see of the person; a refusal (an unknown person's too) is audited,
    then answered 403."""
    role = reader.principal.role
    if role is not Role.CLINICIAN and not (desk and role is Role.REFERRAL_DESK):
        reason = f"role {role.value} reads no clinical records here"
        await _audit(
            request,
            reader,
            person_id,
            None,
            interaction=interaction,
            resource_id=resource_id,
            outcome="DENIED",
            reason=reason,
        )
        raise ProblemError(403, "Forbidden", reason)
    pool = reads.record_pool(request.app, gateway)
    now = datetime.now(UTC)
    if role is Role.CLINICIAN:
        work = partial(reads.read_as_clinician, pool, person_id, reader, now)
    else:
        work = partial(reads.read_as_desk, pool, person_id, reader)
    read = await anyio.to_thread.run_sync(work)
    subject = read.person.person_id if read.known else person_id
    if read.verdict.outcome == "DENIED":
        await _audit(
            request,
            reader,
            subject,
            read,
            interaction=interaction,
            resource_id=resource_id,
            outcome="DENIED",
            reason=read.verdict.reason,
        )
        # A person the record does not know is refused like one the reader may not see: person
        # ids are uuid5 of a member's local id, so a 404 told a prober who is a patient where.
        if role is Role.REFERRAL_DESK:  # names only the desk's own member
            raise ProblemError(403, "Forbidden", desk_refusal(reader))
        raise ProblemError(403, "Forbidden", refusal(reader))
    return read


async def _released(
    request: Request,
    reader: Reader,
    read: reads.RecordRead,
    body: Json,
    *,
    interaction: str,
    resource_id: str,
    returned: int,
) -> Response:
    """Audit the release, then answer (the audit comes first: no record, no data)."""
    await _audit(
        request,
        reader,
        read.person.person_id,
        read,
        interaction=interaction,
        resource_id=resource_id,
        outcome=read.verdict.outcome,
        reason=read.verdict.reason,
        returned=returned,
    )
    return FhirResponse(body)


@router.get("/metadata", summary="CapabilityStatement (no authentication)")
async def metadata(request: Request) -> Response:
    """What this server offers: read-only Patient, $everything and searches by patient."""
    date = datetime.now(UTC).date().isoformat()
    return FhirResponse(capability_statement(_base(request), request.app.version, date))


@router.get("/Patient/{patient_id}", summary="Read a Patient (a consortium person)")
async def read_patient(
    patient_id: str, request: Request, gateway: GatewayDep, reader: ReaderDep
) -> Response:
    """The person's identifiers at the members the reader may see; a merged id links onward."""
    person_id = _person_id(patient_id)
    where = f"Patient/{person_id}"
    read = await _read(request, gateway, reader, person_id, interaction="read", resource_id=where)
    body = patient_resource(read.person, read.verdict.allowed)
    return await _released(
        request, reader, read, body, interaction="read", resource_id=where, returned=1
    )


@router.get("/Patient/{patient_id}/$everything", summary="Everything of a Patient, paged")
async def everything(
    patient_id: str,
    request: Request,
    gateway: GatewayDep,
    reader: ReaderDep,
    count: CountQuery = DEFAULT_COUNT,
    cursor: CursorQuery = None,
) -> Response:
    """A searchset Bundle: the Patient, then every resource the reader may see, newest first.

    A merged-away id's Bundle holds the survivor's Patient: the one its entries refer to."""
    person_id = _person_id(patient_id)
    used = _used(request, ("_count", "_cursor"))
    where = f"Patient/{person_id}/$everything"
    read = await _read(
        request, gateway, reader, person_id, interaction="operation", resource_id=where
    )
    survivor = dataclasses.replace(read.person, asked=read.person.person_id)
    found = [
        Mapped(PATIENT_FIRST, patient_resource(survivor, read.verdict.allowed)),
        *resources_of(read.person.person_id, read.entries, now=datetime.now(UTC)),
    ]
    body, returned = _bundle(request, used, found, cursor, count)
    return await _released(
        request, reader, read, body, interaction="operation", resource_id=where, returned=returned
    )


def _bundle(
    request: Request,
    used: list[tuple[str, str]],
    found: list[Mapped],
    cursor: str | None,
    count: int,
) -> tuple[Json, int]:
    served = min(count, MAX_COUNT)
    try:
        chosen = page(found, cursor, served)
    except InvalidCursorError as exc:
        raise ProblemError(400, "Bad request", str(exc)) from None
    shown = [(n, str(served) if n == "_count" else v) for n, v in used]
    here = str(request.url.replace(query=""))
    self_url = f"{here}?{urlencode(shown)}" if shown else here
    next_url = None
    if chosen.next_cursor:
        onward = [(n, v) for n, v in shown if n not in ("_count", "_cursor")]
        onward += [("_count", str(served)), ("_cursor", chosen.next_cursor)]
        next_url = f"{here}?{urlencode(onward)}"
    body = searchset(_base(request), chosen, self_url, next_url)
    return body, len(chosen.items)


def _search(resource_type: str) -> Callable[..., Awaitable[Response]]:
    """The search-by-patient handler of one resource type."""
    desk = resource_type == "Task"

    async def search(
        request: Request,
        gateway: GatewayDep,
        reader: ReaderDep,
        patient: Annotated[str, Query(description="the Patient: id or Patient/id")],
        count: CountQuery = DEFAULT_COUNT,
        cursor: CursorQuery = None,
    ) -> Response:
        person_id = _person_id(patient)
        used = _used(request, ("patient", "_count", "_cursor"))
        where = f"{resource_type}?patient={person_id}"
        read = await _read(
            request,
            gateway,
            reader,
            person_id,
            interaction="search-type",
            resource_id=where,
            desk=desk,
        )
        now = datetime.now(UTC)
        found = resources_of(read.person.person_id, read.entries, [resource_type], now)
        body, returned = _bundle(request, used, found, cursor, count)
        return await _released(
            request,
            reader,
            read,
            body,
            interaction="search-type",
            resource_id=where,
            returned=returned,
        )

    search.__doc__ = f"{resource_type} resources of one patient, newest first, paged."
    return search


for _type in SEARCHABLE:
    router.add_api_route(
        f"/{_type}",
        _search(_type),
        methods=["GET"],
        summary=f"Search {_type} by patient",
        name=f"search_{_type.lower()}",
    )


@router.get("/{rest:path}", include_in_schema=False)
async def unsupported(rest: str) -> Response:
    """Anything else under /fhir: an OperationOutcome, not a problem+json."""
    return fhir_error(404, f"this server does not serve {rest!r} (see /fhir/metadata)")


@router.api_route(
    "/{rest:path}", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def read_only(request: Request, rest: str) -> Response:
    """A write or a POST search: 405, this server is read-only (an OperationOutcome too)."""
    return fhir_error(
        405,
        f"{request.method} /fhir/{rest}: this server is read-only (GET; see /fhir/metadata)",
        {"Allow": "GET"},
    )


__all__ = ["FHIR_JSON", "router"]
