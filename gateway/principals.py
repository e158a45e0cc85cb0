"""Who calls the gateway: an institution plus a role, and what each role may publish."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from events.envelope import Event
from events.topics import MEMBER_FAMILIES, Family


class Role(StrEnum):
    """The roles of DESIGN.md; a principal holds exactly one."""

    PUBLISHER = "publisher"
    REFERRAL_DESK = "referral_desk"
    CLINICIAN = "clinician"
    BUREAU_ANALYST = "bureau_analyst"
    ADMINISTRATOR = "administrator"


# A referral desk answers referrals (accept, reject, arrival) but records no clinical events.
# Identity decisions are the patient index's own: no hospital may publish them.
_PUBLISHABLE: dict[Role, frozenset[Family]] = {
    Role.PUBLISHER: MEMBER_FAMILIES,
    Role.REFERRAL_DESK: frozenset({Family.REFERRAL}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: one credential of one institution in one role."""

    credential_id: UUID
    institution: str
    role: Role

    def may_publish(self, event: Event) -> str | None:
        """None when this principal may publish the event, else why not."""
        families = _PUBLISHABLE.get(self.role, frozenset())
        if event.family not in families:
            return f"role {self.role.value} may not publish {event.event_type} events"
        if event.envelope.source != self.institution:
            return (
                f"envelope.source is {event.envelope.source!r} but this credential publishes"
                f" only as {self.institution!r}"
            )
        return None
