"""Read functions over the live transfers, for the gateway (through the stable views)."""

from __future__ import annotations

from typing import Any

from psycopg import Connection, sql
from psycopg.rows import dict_row

_COLUMNS = (
    "transfer_id, from_institution, from_patient_local_id, from_encounter_id, discharged_at,"
    " discharge_disposition, to_institution, to_patient_local_id, to_encounter_id, admitted_at,"
    " admission_source, referred, referral_id"
)


def list_transfers(
    conn: Connection[Any], institution: str, unreferred: bool | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Transfers from or to one institution, latest admission first (no person ids)."""
    where = [sql.SQL("(from_institution = %(inst)s OR to_institution = %(inst)s)")]
    params: dict[str, Any] = {"inst": institution, "limit": limit}
    if unreferred is not None:
        where.append(sql.SQL("referred = %(referred)s"))
        params["referred"] = not unreferred
    query = sql.SQL(
        "SELECT {} FROM transfers.transfers WHERE {} ORDER BY admitted_at DESC, transfer_id"
        " LIMIT %(limit)s"
    ).format(sql.SQL(_COLUMNS), sql.SQL(" AND ").join(where))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
