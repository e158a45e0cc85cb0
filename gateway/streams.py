"""What the gateway's server-sent event streams share: ending on a revoked credential, and a
bound on how many are open.

A stream's request was authenticated once, when it opened; a revocation must still end it.
Each stream reads its credential again before it sends what it has read (one primary-key
lookup), and ends with an `error` event holding the problem body of a 401.

Each open stream holds a database poll every half second (referrals) or a Kafka consumer and a
thread (reports), for as long as the client keeps it: without a bound, one credential could open
streams until publishing starves. `StreamSlots` bounds them per worker process and per credential;
a stream beyond either bound is refused before it starts: 429 with Retry-After.
"""

from __future__ import annotations

import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from gateway import credentials
from gateway.principals import Principal
from gateway.problems import PROBLEM_JSON, ProblemError, problem_body


def problem_data(exc: ProblemError) -> dict[str, Any]:
    """The problem details body of an error ending a stream (its HTTP status is long sent)."""
    return problem_body(exc.status, exc.title, exc.detail, kind=exc.kind)


async def revoked(conn: AsyncConnection[TupleRow], principal: Principal) -> dict[str, Any] | None:
    """The problem body (401) ending a stream whose credential is revoked or gone, else None."""
    if await credentials.is_active(conn, principal.credential_id):
        return None
    return problem_data(ProblemError(401, "Unauthorized", "the token is unknown or revoked"))


T = TypeVar("T")

TOO_MANY_STREAMS: dict[str, Any] = {
    "description": "The gateway or this credential holds its most open streams (Retry-After).",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


class Slot:
    """One open stream's place; released once, when its body ends or is dropped unread."""

    def __init__(self, slots: StreamSlots, credential: uuid.UUID) -> None:
        self._slots, self._credential, self._released = slots, credential, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release(self._credential)

    def around(self, body: AsyncIterator[T]) -> AsyncIterator[T]:
        """The stream's body, holding this slot until it ends."""

        async def held() -> AsyncIterator[T]:
            try:
                async for chunk in body:
                    yield chunk
            finally:
                self.release()

        stream = held()
        weakref.finalize(stream, self.release)  # a response dropped before its body was read
        return stream


class StreamSlots:
    """At most `total` open streams in this process and `per_credential` for one credential."""

    def __init__(self, total: int, per_credential: int, retry_after_s: int = 5) -> None:
        self.total, self.per_credential, self.retry_after_s = total, per_credential, retry_after_s
        self._open: Counter[uuid.UUID] = Counter()

    def open(self, principal: Principal) -> int:
        """How many streams the principal's credential has open here."""
        return self._open[principal.credential_id]

    def take(self, principal: Principal) -> Slot:
        """A slot for one more stream of the principal, or 429 when none is free."""
        credential = principal.credential_id
        if self._open.total() >= self.total:
            raise self._refused(
                f"the gateway holds its most open streams ({self.total}); retry later"
            )
        if self._open[credential] >= self.per_credential:
            raise self._refused(
                f"this credential has {self.per_credential} streams open, the most it may;"
                " close one (a stream resumes from its Last-Event-ID)"
            )
        self._open[credential] += 1
        return Slot(self, credential)

    def _release(self, credential: uuid.UUID) -> None:
        self._open[credential] -= 1
        if self._open[credential] <= 0:
            del self._open[credential]

    def _refused(self, detail: str) -> ProblemError:
        return ProblemError(
            429,
            "Too many requests",
            detail,
            kind="too-many-streams",
            headers={"Retry-After": str(self.retry_after_s)},
        )
