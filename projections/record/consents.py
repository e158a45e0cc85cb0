"""A patient's consents: grants and revocations folded, checked at read time (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from events.consent import ConsentPurpose, ConsentScope
from projections.record.entries import Entry


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent: who may read, for what, from when to when, and whether it was revoked."""

    consent_id: str
    institution: str  # where the patient signed it
    local_id: str
    scope: ConsentScope
    institutions: tuple[str, ...]
    purposes: tuple[ConsentPurpose, ...]
    valid_from: datetime
    expires_at: datetime | None
    granted_at: datetime
    revoked_at: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        """In force at this moment: started, not expired, not revoked by then."""
        if now < self.valid_from:
            return False
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return self.revoked_at is None or now < self.revoked_at

    def covers(self, reader: str, purpose: ConsentPurpose | None) -> bool:
        """Whether the consent lets this member read for this purpose (None: any purpose)."""
        if purpose is not None and purpose not in self.purposes:
            return False
        if self.scope is ConsentScope.CONSORTIUM_WIDE:
            return True
        return self.scope is ConsentScope.NAMED_INSTITUTIONS and reader in self.institutions

    def state_at(self, now: datetime) -> str:
        """ACTIVE, PENDING, EXPIRED or REVOKED at this moment."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "REVOKED"
        if now < self.valid_from:
            return "PENDING"
        if self.expires_at is not None and now >= self.expires_at:
            return "EXPIRED"
        return "ACTIVE"


def current_consent(statements: Iterable[Entry]) -> Consent | None:
    """The consent after its grants and revocations; None until a grant is known.

    A consent id belongs to the member and local patient of its first grant (by time, then
    event id): a grant of the same id from another member or local patient is ignored, so no
    one can move a person's consent to its own patient by re-granting its id. Of the owner's
    grants the latest counts (a grant sent twice, a renewal); the earliest revocation counts.
    Every rule is a function of the set, so arrival order does not matter.
    """
    ordered = sorted(statements, key=lambda e: (e.occurred_at, e.event_id))
    grants = [e for e in ordered if e.status == "GRANTED"]
    revokes = [e for e in ordered if e.status == "REVOKED"]
    if not grants:
        return None
    owner = (grants[0].institution, grants[0].local_id)
    grant = [g for g in grants if (g.institution, g.local_id) == owner][-1]
    d = grant.detail
    return Consent(
        consent_id=grant.subject_id or "",
        institution=grant.institution,
        local_id=grant.local_id,
        scope=ConsentScope(d["scope"]),
        institutions=tuple(d.get("institutions") or ()),
        purposes=tuple(ConsentPurpose(p) for p in d.get("purposes") or ()),
        valid_from=datetime.fromisoformat(d["valid_from"]),
        expires_at=datetime.fromisoformat(d["expires_at"]) if d.get("expires_at") else None,
        granted_at=grant.occurred_at,
        revoked_at=revokes[0].occurred_at if revokes else None,
    )
