"""Who may read what another member recorded about a person: one pure decision with its reason.

A clinician of member B reads what member A recorded when B is A, or the person has an active
consent covering B (checked against `now`, at read time), or an active referral between A and B
lets B read A (the receiver from the request, the sender once the receiver accepted), or the
clinician breaks the glass with a stated reason (allowed and flagged for review).
Anything else is denied. The caller audits every decision, denied ones too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from events.consent import ConsentPurpose
from projections.record.consents import Consent
from projections.record.referrals import ReferralLink


class Basis(StrEnum):
    """On what ground a read is allowed, or that it is not."""

    OWN_RECORD = "OWN_RECORD"
    CONSENT = "CONSENT"
    REFERRAL = "REFERRAL"
    BREAK_GLASS = "BREAK_GLASS"
    DENIED = "DENIED"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A clinician of `reader` asks to read what `recorder` recorded, at `now`, for `purpose`."""

    reader: str
    recorder: str
    now: datetime
    purpose: ConsentPurpose = ConsentPurpose.TREATMENT
    break_glass_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AccessInputs:
    """What the decision needs to know about the person (from queries.access_inputs)."""

    person_id: str
    consents: Sequence[Consent] = ()
    referrals: Sequence[ReferralLink] = ()


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The outcome: allowed or not, on which basis, why, and whether it must be reviewed."""

    allowed: bool
    basis: Basis
    reason: str
    consent_id: str | None = None
    referral_id: str | None = None

    @property
    def flagged(self) -> bool:
        """Break-glass reads are allowed but flagged for review."""
        return self.basis is Basis.BREAK_GLASS


def decide(request: AccessRequest, inputs: AccessInputs) -> AccessDecision:
    """The access decision for one reader, recorder and moment."""
    reader, recorder, now = request.reader, request.recorder, request.now
    if reader == recorder:
        return AccessDecision(True, Basis.OWN_RECORD, f"{reader} reads its own record")
    consents = sorted(
        (c for c in inputs.consents if c.active_at(now) and c.covers(reader, request.purpose)),
        key=lambda c: (c.granted_at, c.consent_id),
    )
    if consents:
        c = consents[-1]
        reason = f"consent {c.consent_id} ({c.scope.value}) covers {reader} for {request.purpose}"
        return AccessDecision(True, Basis.CONSENT, reason, consent_id=c.consent_id)
    referrals = sorted(
        (r for r in inputs.referrals if r.lets(reader, recorder, now)),
        key=lambda r: (r.requested_at, r.referral_id),
    )
    if referrals:
        r = referrals[-1]
        reason = f"referral {r.referral_id} ({r.state_at(now)}) lets {reader} read {recorder}"
        return AccessDecision(True, Basis.REFERRAL, reason, referral_id=r.referral_id)
    why = (request.break_glass_reason or "").strip()
    if why:
        return AccessDecision(True, Basis.BREAK_GLASS, f"break-glass by {reader}: {why}")
    return AccessDecision(False, Basis.DENIED, _denial(request, inputs))


def _denial(request: AccessRequest, inputs: AccessInputs) -> str:
    """Why nothing allowed the read, naming the nearest misses."""
    misses = []
    for c in inputs.consents:
        if c.covers(request.reader, request.purpose) and not c.active_at(request.now):
            misses.append(f"consent {c.consent_id} is {c.state_at(request.now).lower()}")
        elif c.active_at(request.now):
            misses.append(
                f"consent {c.consent_id} does not cover {request.reader} for {request.purpose}"
            )
    for r in inputs.referrals:
        if not r.joins(request.reader, request.recorder):
            continue
        state = r.state_at(request.now).lower()
        if r.active_at(request.now):  # the sender, before the receiver accepted
            misses.append(
                f"referral {r.referral_id} is {state}: {request.recorder} has not accepted it"
            )
        else:
            misses.append(f"referral {r.referral_id} is {state} and not active")
    detail = "; ".join(misses) if misses else "no consent, no referral between the two members"
    return f"{request.reader} may not read {request.recorder}'s record: {detail}"
