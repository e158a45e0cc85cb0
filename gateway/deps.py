"""Typed dependencies of the routers: the gateway's shared parts and the calling principal."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from events.catalog import Catalog
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
    """The credential's lookup, started before the request's body is read: a route reads and
    validates the body (and looks its event ids up) while the database answers."""

    def __init__(self, lookup: asyncio.Future[Principal | None]) -> None:
        self._lookup = lookup
        # Whoever never asks (a request cancelled meanwhile) must not leave an unread error.
        lookup.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def principal(self) -> Principal:
        """The principal, or 401 (answered before any error of the body)."""
        return _known(await self._lookup)

    def cancel(self) -> None:
        """Nobody will ask any more."""
        self._lookup.cancel()


async def pending_principal(
    gateway: GatewayDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> PendingPrincipal:
    """`current_principal` that does not wait: 401 only when the route asks for the principal."""
    if bearer is None:
        raise ProblemError(401, "Unauthorized", "a bearer token is required", headers=_CHALLENGE)
    return PendingPrincipal(asyncio.ensure_future(gateway.authenticate(bearer.credentials)))


PrincipalDep = Annotated[Principal, Depends(current_principal)]
PendingPrincipalDep = Annotated[PendingPrincipal, Depends(pending_principal)]
