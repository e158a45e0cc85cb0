"""Who may read what of a person's record: the decisions of one read, its audit outcome (pure)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from events.consent import ConsentPurpose
from gateway.fhir.audit_event import Grant
from gateway.principals import Principal
from projections.record.access import AccessDecision, AccessInputs, AccessRequest, Basis, decide
from projections.record.queries import Person

# X-Purpose-Of-Use: HL7 v3 PurposeOfUse codes (and the consortium's own purpose names) →
# the consent purpose access.decide checks, and the code the audit records.
PURPOSES: Mapping[str, tuple[ConsentPurpose, str]] = {
    "TREAT": (ConsentPurpose.TREATMENT, "TREAT"),
    "ETREAT": (ConsentPurpose.TREATMENT, "ETREAT"),
    "COC": (ConsentPurpose.CARE_COORDINATION, "COC"),
    "TREATMENT": (ConsentPurpose.TREATMENT, "TREAT"),
    "CARE_COORDINATION": (ConsentPurpose.CARE_COORDINATION, "COC"),
    "REFERRAL": (ConsentPurpose.REFERRAL, "COC"),
    "RESULT_RECOGNITION": (ConsentPurpose.RESULT_RECOGNITION, "TREAT"),
}
DEFAULT_PURPOSE = "TREAT"


class BadReaderError(ValueError):
    """A purpose or break-glass header the API cannot act on."""


@dataclass(frozen=True, slots=True)
class Reader:
    """The principal reading, for which purpose, and the break-glass reason if it gave one."""

    principal: Principal
    purpose: ConsentPurpose
    purpose_code: str  # HL7 v3 PurposeOfUse, as audited
    break_glass: str | None = None


def reader_of(principal: Principal, purpose: str | None, break_glass: str | None) -> Reader:
    """The reader from the request's headers (the reason may be percent-encoded UTF-8)."""
    name = (purpose or DEFAULT_PURPOSE).strip().upper()
    if name not in PURPOSES:
        raise BadReaderError(f"X-Purpose-Of-Use {purpose!r} is not one of {', '.join(PURPOSES)}")
    reason = None
    if break_glass is not None:
        reason = unquote(break_glass).strip()
        if not reason:
            raise BadReaderError("X-Break-Glass needs a stated reason")
        if any(unicodedata.category(ch) == "Cc" for ch in reason):
            # A NUL would pass Kafka and fail the audit table after the Kafka record (a 503 to
            # retry for ever); no reason needs a control character, so refuse it before both.
            raise BadReaderError("X-Break-Glass may not hold control characters")
    consent_purpose, code = PURPOSES[name]
    return Reader(principal, consent_purpose, code, reason)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one read may show: the members whose records it may see, and how to audit it."""

    allowed: frozenset[str]
    grants: tuple[Grant, ...]
    outcome: str  # ALLOWED, DENIED or BREAK_GLASS (gateway.audit.Outcome values)
    reason: str | None


def clinician_verdict(
    reader: Reader, person: Person, inputs: AccessInputs, now: datetime
) -> Verdict:
    """access.decide for every member that recorded something of the person."""
    decisions: dict[str, AccessDecision] = {}
    for institution in sorted({i for i, _ in person.local_patients}):
        request = AccessRequest(
            reader.principal.institution, institution, now, reader.purpose, reader.break_glass
        )
        decisions[institution] = decide(request, inputs)
    return verdict(reader, decisions)


def verdict(reader: Reader, decisions: Mapping[str, AccessDecision]) -> Verdict:
    """The verdict of a set of per-member decisions."""
    allowed = frozenset(i for i, d in decisions.items() if d.allowed)
    grants = tuple(
        Grant(i, d.basis.value, d.consent_id, d.referral_id) for i, d in sorted(decisions.items())
    )
    if not allowed:
        reasons = [d.reason for _, d in sorted(decisions.items())]
        return Verdict(allowed, grants, "DENIED", "; ".join(reasons) or "nothing to read")
    if any(d.allowed and d.flagged for d in decisions.values()):
        return Verdict(allowed, grants, "BREAK_GLASS", reader.break_glass)
    return Verdict(allowed, grants, "ALLOWED", None)


def desk_verdict(reader: Reader, referral_parties: Iterable[tuple[str, frozenset[str]]]) -> Verdict:
    """A referral desk sees the referrals its member sends or receives, nothing else."""
    mine = reader.principal.institution
    shown = [(rid, parties) for rid, parties in referral_parties if mine in parties]
    grants = tuple(Grant(mine, "REFERRAL_DESK", referral_id=rid) for rid, _ in shown)
    if not shown:
        return Verdict(frozenset(), grants, "DENIED", desk_refusal(reader))
    return Verdict(frozenset({mine}), grants, "ALLOWED", None)


def desk_refusal(reader: Reader) -> str:
    """What a refused referral desk is told (an unknown person's refusal reads the same)."""
    return f"{reader.principal.institution} is party to none of this person's referrals"


def refusal(reader: Reader) -> str:
    """What a refused clinician is told: nothing of the person. The verdict's reason (which
    members hold records of the person, their consents and referrals) is for the audit only;
    answering it would tell a reader refused everything where the person has been treated."""
    return (
        f"no record of this person is open to {reader.principal.institution} for"
        f" {reader.purpose.value}: no own record, no active consent or referral covering it"
        " (break-glass: X-Break-Glass, audited and reviewed)"
    )


def denied(reason: str) -> Verdict:
    """A verdict that shows nothing."""
    return Verdict(frozenset(), (), "DENIED", reason)


__all__ = [
    "Basis",
    "Reader",
    "Verdict",
    "clinician_verdict",
    "desk_verdict",
    "reader_of",
    "refusal",
]
