"""The index's links as other projections' reads join them (SQL over `empi.records`)."""

from __future__ import annotations


def party_persons(alias: str) -> str:
    """SQL joins giving each party's consortium person (`f.person_id`, `t.person_id`) of a row
    `alias` with from_/to_ institution and patient local id, when the index linked the record."""
    return (
        f"LEFT JOIN empi.records f ON f.institution = {alias}.from_institution"
        f" AND f.local_id = {alias}.from_patient_local_id"
        f" LEFT JOIN empi.records t ON t.institution = {alias}.to_institution"
        f" AND t.local_id = {alias}.to_patient_local_id"
    )
