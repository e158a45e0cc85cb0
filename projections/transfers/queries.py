"""Read functions over the live transfers, for the gateway (through the stable views)."""

from __future__ import annotations

from datetime import datetime
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


TRANSFER_MEASURES = ("received_referred", "received_unreferred", "sent_referred", "sent_unreferred")


def transfer_counts(
    conn: Connection[Any], since: datetime, until: datetime
) -> dict[str, dict[str, int]]:
    """Per member, transfers admitted in [since, until), received and sent, with and without a
    referral (the bureau's counts: no person, patient or encounter id leaves here). No total is
    counted: a total beside its unreferred part would give the referred part by subtraction."""
    rows = conn.execute(
        "SELECT institution, sum(received_referred), sum(received_unreferred),"
        " sum(sent_referred), sum(sent_unreferred) FROM ("
        "  SELECT to_institution AS institution, referred::int AS received_referred,"
        "   (NOT referred)::int AS received_unreferred, 0 AS sent_referred, 0 AS sent_unreferred"
        "  FROM transfers.transfers WHERE admitted_at >= %(since)s AND admitted_at < %(until)s"
        "  UNION ALL"
        "  SELECT from_institution, 0, 0, referred::int, (NOT referred)::int"
        "  FROM transfers.transfers WHERE admitted_at >= %(since)s AND admitted_at < %(until)s"
        " ) t GROUP BY institution ORDER BY institution",
        {"since": since, "until": until},
    ).fetchall()
    return {
        row[0]: dict(zip(TRANSFER_MEASURES, (int(v) for v in row[1:]), strict=True)) for row in rows
    }
