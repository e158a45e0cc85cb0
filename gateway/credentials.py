"""Bearer credentials stored as digests in PostgreSQL: issue, list, revoke, authenticate."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
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


async def authenticate(conn: AsyncConnection[TupleRow], token: str) -> Principal | None:
    """The principal of a valid, unrevoked token, else None (read on every request: no cache)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    credential_id = uuid.UUID(hex=match.group(1))
    cursor = await conn.execute(
        "SELECT secret_sha256, institution, role FROM gateway_credentials"
        " WHERE credential_id = %s AND revoked_at IS NULL",
        (credential_id,),
    )
    row = await cursor.fetchone()
    # Compare digests in constant time so response timing tells nothing about the secret.
    if row is None or not hmac.compare_digest(bytes(row[0]), _digest(match.group(2))):
        return None
    return Principal(credential_id, row[1], Role(row[2]))
