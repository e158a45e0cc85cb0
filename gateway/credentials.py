"""Bearer credentials stored as digests in PostgreSQL: issue, list, revoke, authenticate."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from gateway.principals import Principal, Role

TOKEN_PREFIX = "cbt"
# cbt_<credential id, 32 hex>_<secret, 43 url-safe base64 characters = 256 random bits>
_TOKEN = re.compile(r"^cbt_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$", re.ASCII)


@dataclass(frozen=True)
class IssuedCredential:
    """A new credential; the token is shown once and never stored."""

    credential_id: uuid.UUID
    institution: str
    role: Role
    token: str


@dataclass(frozen=True)
class CredentialInfo:
    """What the database knows of a credential (never the token)."""

    credential_id: uuid.UUID
    institution: str
    role: Role
    label: str
    issued_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


async def issue(
    conn: AsyncConnection[TupleRow], institution: str, role: Role, label: str = ""
) -> IssuedCredential:
    """Create a credential and return its token (the only time the token exists in full)."""
    credential_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO gateway_credentials (credential_id, secret_sha256, institution, role, label)"
        " VALUES (%s, %s, %s, %s, %s)",
        (credential_id, _digest(secret), institution, role.value, label),
    )
    token = f"{TOKEN_PREFIX}_{credential_id.hex}_{secret}"
    return IssuedCredential(credential_id, institution, role, token)


async def list_credentials(
    conn: AsyncConnection[TupleRow], institution: str | None = None
) -> list[CredentialInfo]:
    """Every credential (of one institution when given), oldest first."""
    cursor = await conn.execute(
        "SELECT credential_id, institution, role, label, issued_at, revoked_at"
        " FROM gateway_credentials WHERE %(inst)s::text IS NULL OR institution = %(inst)s"
        " ORDER BY issued_at, credential_id",
        {"inst": institution},
    )
    return [
        CredentialInfo(row[0], row[1], Role(row[2]), row[3], row[4], row[5])
        for row in await cursor.fetchall()
    ]


async def revoke(conn: AsyncConnection[TupleRow], credential_id: uuid.UUID) -> bool:
    """Revoke a credential; False when no such unrevoked credential exists."""
    cursor = await conn.execute(
        "UPDATE gateway_credentials SET revoked_at = now()"
        " WHERE credential_id = %s AND revoked_at IS NULL",
        (credential_id,),
    )
    return cursor.rowcount == 1


async def is_active(conn: AsyncConnection[TupleRow], credential_id: uuid.UUID) -> bool:
    """Whether a credential (already authenticated once) still exists unrevoked: what a long
    answer, a stream, re-reads while it runs (one primary-key lookup)."""
    cursor = await conn.execute(
        "SELECT 1 FROM gateway_credentials WHERE credential_id = %s AND revoked_at IS NULL",
        (credential_id,),
    )
    return await cursor.fetchone() is not None


async def authenticate(conn: AsyncConnection[TupleRow], token: str) -> Principal | None:
    """The principal of a valid, unrevoked token, else None (read on every request: no cache)."""
    return (await authenticate_all(conn, [token]))[0]


# The rows of the credentials some tokens name, unless revoked (the digest is checked here).
CREDENTIAL_ROWS = (
    "SELECT credential_id, secret_sha256, institution, role FROM gateway_credentials"
    " WHERE credential_id = ANY(%s) AND revoked_at IS NULL"
)
CredentialRows = dict[uuid.UUID, tuple[bytes, str, str]]


async def authenticate_all(
    conn: AsyncConnection[TupleRow], tokens: Sequence[str]
) -> list[Principal | None]:
    """The principal of each token (None when invalid or revoked), in one statement."""
    ids = credential_ids(tokens)
    rows: CredentialRows = {}
    if ids:
        cursor = await conn.execute(CREDENTIAL_ROWS, (ids,))
        rows = {r[0]: (bytes(r[1]), r[2], r[3]) for r in await cursor.fetchall()}
    return principals_of(tokens, rows)


def credential_ids(tokens: Sequence[str]) -> list[uuid.UUID]:
    """The credential ids that well-formed tokens name (what to read)."""
    parsed = [_TOKEN.fullmatch(token) for token in tokens]
    return list({uuid.UUID(hex=m.group(1)) for m in parsed if m is not None})


def principals_of(tokens: Sequence[str], rows: CredentialRows) -> list[Principal | None]:
    """The principal of each token whose secret matches its unrevoked row, else None."""
    principals: list[Principal | None] = []
    for token in tokens:
        match = _TOKEN.fullmatch(token)
        found = None
        if match is not None:
            credential_id = uuid.UUID(hex=match.group(1))
            row = rows.get(credential_id)
            # Compare digests in constant time so response timing tells nothing about the secret.
            if row is not None and hmac.compare_digest(row[0], _digest(match.group(2))):
                found = Principal(credential_id, row[1], Role(row[2]))
        principals.append(found)
    return principals
