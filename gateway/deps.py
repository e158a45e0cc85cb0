"""Typed dependencies of the routers: the gateway's shared parts and the calling principal."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from events.catalog import Catalog
from gateway.ingest import Known
from gateway.principals import Principal
from gateway.problems import ProblemError
from gateway.state import Gateway

_bearer = HTTPBearer(auto_error=False, description="A token from `consortium credentials issue`.")


# Dependencies are `async def` although they await nothing: FastAPI runs a plain `def`
# dependency in a worker thread, a hand-over that cost more than the rest of a small request.
async def get_gateway(request: Request) -> Gateway:
    """The process-wide parts created at start-up."""
    gateway: Gateway | None = request.app.state.gateway
    if gateway is None:
        raise ProblemError(503, "Service unavailable", "this gateway was started without Kafka")
    return gateway


async def get_catalog(request: Request) -> Catalog:
    """The schema catalog (available without servers)."""
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_consortium_id(request: Request) -> str:
    """The tenant prefix of this gateway's topics."""
    consortium_id: str = request.app.state.consortium_id
    return consortium_id


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
ConsortiumIdDep = Annotated[str, Depends(get_consortium_id)]


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="consortium"'}


def _known(principal: Principal | None) -> Principal:
    if principal is None:
        raise ProblemError(
            401, "Unauthorized", "the token is unknown or revoked", headers=_CHALLENGE
        )
    return principal


async def current_principal(
    gateway: GatewayDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of the request's bearer token, looked up on every request (no cache)."""
    if bearer is None:
        raise ProblemError(401, "Unauthorized", "a bearer token is required", headers=_CHALLENGE)
    return _known(await gateway.authenticate(bearer.credentials))


class PendingPrincipal:
    """The credential's lookup, started when the route says: before a large body is read (the
    route reads and validates it, and looks its event ids up, while the database answers), or
    together with the lookup of a small body's event ids (one statement for both)."""

    def __init__(self, gateway: Gateway, token: str) -> None:
        self._gateway, self._token = gateway, token
        self._lookup: asyncio.Future[Principal | None] | None = None

    def start(self) -> None:
        """Read the credential now, alone (a no-op once started)."""
        if self._lookup is None:
            self._lookup = asyncio.ensure_future(self._gateway.authenticate(self._token))
            # Whoever never asks (a request cancelled meanwhile) must not leave an unread error.
            self._lookup.add_done_callback(lambda f: f.cancelled() or f.exception())

    @property
    def started(self) -> bool:
        """Whether the credential is being (or was) read alone."""
        return self._lookup is not None

    async def principal(self) -> Principal:
        """The principal, or 401 (answered before any error of the body)."""
        self.start()
        assert self._lookup is not None
        return _known(await self._lookup)

    async def principal_and_known(self, event_ids: list[UUID]) -> tuple[Principal, Known]:
        """The principal (or 401) and the record of these ids, read in one statement."""
        principal, known = await self._gateway.authenticate_and_look_up(self._token, event_ids)
        return _known(principal), known

    def cancel(self) -> None:
        """Nobody will ask any more."""
        if self._lookup is not None:
            self._lookup.cancel()


async def pending_principal(
    gateway: GatewayDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> PendingPrincipal:
    """`current_principal` that does not wait: 401 only when the route asks for the principal."""
    if bearer is None:
        raise ProblemError(401, "Unauthorized", "a bearer token is required", headers=_CHALLENGE)
    return PendingPrincipal(gateway, bearer.credentials)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
PendingPrincipalDep = Annotated[PendingPrincipal, Depends(pending_principal)]
