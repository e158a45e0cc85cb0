"""Async reads of the live transfers for the gateway's desks (through the stable views)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from projections.empi.links import party_persons

# Each end's consortium person, when the patient index has linked the local record.
_SELECT = """
SELECT x.transfer_id, x.from_institution, x.from_patient_local_id, x.from_encounter_id,
       x.discharged_at, x.discharge_disposition, x.to_institution, x.to_patient_local_id,
       x.to_encounter_id, x.admitted_at, x.admission_source, x.referred, x.referral_id,
       f.person_id AS from_person_id, t.person_id AS to_person_id
FROM transfers.transfers x
""" + party_persons("x")


async def transfer_page(
    conn: AsyncConnection[Any],
    institution: str,
    *,
    unreferred: bool | None = None,
    direction: Literal["incoming", "outgoing"] | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Transfers from or to one institution, latest admission first, keyset-paged."""
    sides = {
        "incoming": "x.to_institution = %(inst)s",
        "outgoing": "x.from_institution = %(inst)s",
        None: "(x.from_institution = %(inst)s OR x.to_institution = %(inst)s)",
    }
    where = [sql.SQL(sides[direction])]
    params: dict[str, Any] = {"inst": institution, "limit": limit}
    if unreferred is not None:
        where.append(sql.SQL("x.referred = %(referred)s"))
        params["referred"] = not unreferred
    if after is not None:
        where.append(sql.SQL("(x.admitted_at, x.transfer_id) < (%(at)s, %(id)s)"))
        params["at"], params["id"] = after
    query = sql.SQL(
        "{} WHERE {} ORDER BY x.admitted_at DESC, x.transfer_id DESC LIMIT %(limit)s"
    ).format(sql.SQL(_SELECT), sql.SQL(" AND ").join(where))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
