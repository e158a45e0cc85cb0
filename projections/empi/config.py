"""The index's deployment configuration: the resident-id hash key and who publishes decisions."""

from __future__ import annotations

import os

from events.membership import InstitutionLevel, Membership, load_membership
from projections.empi.identity import IdHasher
from projections.empi.index import IndexConfig

HASH_KEY_VARIABLE = "EMPI_ID_HASH_KEY"


class MissingHashKeyError(RuntimeError):
    """No resident-id hash key is configured: the index refuses to hash with a default."""


def lead_institution(membership: Membership | None = None) -> str:
    """The lead hospital (牵头医院): it hosts the index and publishes its decisions."""
    members = membership or load_membership()
    hospitals = members.at_level(InstitutionLevel.COUNTY_HOSPITAL)
    if not hospitals:
        raise ValueError("the membership has no county hospital to host the patient index")
    return sorted(h.code for h in hospitals)[0]


def index_config(membership: Membership | None = None) -> IndexConfig:
    """The configuration of a running index: key from EMPI_ID_HASH_KEY (at least 16 bytes)."""
    # Read here, not in consortium.settings, until the lead adds it there as a SecretStr.
    key = os.environ.get(HASH_KEY_VARIABLE, "")
    if not key:
        raise MissingHashKeyError(
            f"set {HASH_KEY_VARIABLE} to a secret of at least 16 bytes; changing it later"
            " means rebuilding the index (every stored hash changes)"
        )
    return IndexConfig(
        hasher=IdHasher(key.encode()), index_institution=lead_institution(membership)
    )
