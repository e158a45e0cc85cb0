"""What the gateway's server-sent event streams share: ending on a revoked credential.

A stream's request was authenticated once, when it opened; a revocation must still end it.
Each stream reads its credential again before it sends what it has read (one primary-key
lookup), and ends with an `error` event holding the problem body of a 401.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from gateway import credentials
from gateway.principals import Principal
from gateway.problems import ProblemError, problem_body


def problem_data(exc: ProblemError) -> dict[str, Any]:
    """The problem details body of an error ending a stream (its HTTP status is long sent)."""
    return problem_body(exc.status, exc.title, exc.detail, kind=exc.kind)


async def revoked(conn: AsyncConnection[TupleRow], principal: Principal) -> dict[str, Any] | None:
    """The problem body (401) ending a stream whose credential is revoked or gone, else None."""
    if await credentials.is_active(conn, principal.credential_id):
        return None
    return problem_data(ProblemError(401, "Unauthorized", "the token is unknown or revoked"))
