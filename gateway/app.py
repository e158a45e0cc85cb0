"""The FastAPI application factory of the gateway."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from consortium.settings import get_settings
from events.catalog import Catalog, default_catalog
from gateway import docs_pages, openapi, problems
from gateway.config import GatewayConfig
from gateway.routers import (
    asyncapi,
    audit_review,
    dashboard,
    events,
    fhir,
    hl7v2,
    identity,
    persons,
    record,
    referrals,
    registry,
    reports,
    transfers,
)
from gateway.state import Gateway

Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
# Allocations of container objects between two young-generation collections (CPython: 700).
GC_YOUNG_THRESHOLD = 50_000


@contextmanager
def tuned_garbage_collector() -> Iterator[None]:
    """Collect less often, and never traverse what start-up built (docs/gateway.md, Performance);
    CPython's settings come back when the app stops (tests run many apps in one process).

    A batch of 500 events is ~100,000 short-lived objects: with CPython's threshold of 700 the
    collector ran every few events and re-traversed the batch's live dicts and models each time
    (a third to a half of the validation's CPU in a micro-benchmark). What start-up built (app,
    routes, schemas, pydantic validators, catalog) lives as long as the process: frozen, the
    full collections no longer walk it."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


DESCRIPTION = """\
Member institutions of the consortium publish clinical events here, over JSON or HL7 v2.
An answer of 202 means Kafka acknowledged every event. Errors are RFC 9457 problem details
(`application/problem+json`) whose `errors` locate each invalid field by JSON Pointer and
JSONPath. The schema catalog is served read-only under the Confluent Schema Registry paths.
"""


# FastAPI itself opens an OpenTelemetry server span per request (continuing an incoming
# traceparent); the publisher's span and the Kafka traceparent header descend from it.
def create_app(
    config: GatewayConfig | None = None,
    catalog: Catalog | None = None,
    *,
    mllp_port: int | None = None,
    mllp_host: str = "127.0.0.1",
) -> FastAPI:
    """A gateway app; without a config only the catalog paths work (publishing answers 503)."""
    catalog = catalog or default_catalog()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = await Gateway.start(config, catalog) if config else None
        listener = None
        try:
            if mllp_port is not None and app.state.gateway is not None:
                from gateway.hl7.mllp import start_listener

                listener = await start_listener(app.state.gateway, mllp_host, mllp_port)
            app.state.mllp = listener
            with tuned_garbage_collector():
                yield
        finally:
            if listener is not None:
                listener.close()
                await listener.wait_closed()
            if app.state.gateway is not None:
                from gateway.audit import close_audit_log
                from gateway.fhir.reads import close_record_pool

                close_audit_log(app)
                close_record_pool(app)
                await app.state.gateway.stop()

    app = FastAPI(
        title="consortium-backbone gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # A server span per request (continuing an incoming traceparent), but no span per
        # dependency, endpoint and serialization: those were a tenth of a small request's CPU.
        telemetry={"operation_spans": False},
        docs_url=None,  # served pinned, with Subresource Integrity (gateway/docs_pages.py)
        redoc_url=None,
    )
    app.state.catalog = catalog
    app.state.consortium_id = config.consortium_id if config else get_settings().consortium_id
    app.state.gateway = None
    for module in (
        events,
        hl7v2,
        registry,
        asyncapi,
        reports,
        dashboard,
        referrals,
        transfers,
        identity,
        persons,
        audit_review,
        record,
        fhir,
    ):
        app.include_router(module.router)
    problems.install(app)
    openapi.install(app)
    docs_pages.install(app)

    def unavailable(detail: str, kind: str, retry_after_s: int) -> Handler:
        async def answer(request: Request, exc: Exception) -> JSONResponse:
            return problems.problem_response(
                503,
                "Service unavailable",
                detail,
                kind=kind,
                instance=request.url.path,
                headers={"Retry-After": str(retry_after_s)},
            )

        return answer

    database_down = unavailable(
        "the database does not answer; nothing was published or read", "database-unavailable", 5
    )
    projection_missing = unavailable(
        "the projection this reads has not been built yet: start its processor",
        "projection-unavailable",
        30,
    )

    app.add_exception_handler(psycopg.OperationalError, database_down)
    app.add_exception_handler(psycopg.errors.UndefinedTable, projection_missing)
    app.add_exception_handler(psycopg_pool.PoolTimeout, database_down)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    def healthz() -> dict[str, str]:
        """`ok` while the process serves requests."""
        return {"status": "ok"}

    return app
