"""The FHIR AuditEvent of one read: kept beside the read audit row (column `detail`)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.fhir.systems import CREDENTIAL, V3_ACT_REASON, Json, organization, ref

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
# Search and operations execute; a read reads (AuditEvent.action).
_ACTIONS = {"read": "R", "search-type": "E", "operation": "E"}


@dataclass(frozen=True, slots=True)
class Grant:
    """The access decision for one recording member: on what basis, which consent or referral."""

    institution: str
    basis: str
    consent_id: str | None = None
    referral_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReadFacts:
    """What the gateway knows of a read when it audits it."""

    recorded: datetime
    interaction: str  # read, search-type or operation (FHIR restful-interaction)
    path: str
    query: str
    credential_id: str
    institution: str
    role: str
    client_address: str | None
    purpose: str  # HL7 v3 PurposeOfUse
    outcome: str  # ALLOWED, DENIED or BREAK_GLASS
    reason: str | None
    person_id: str
    grants: Sequence[Grant] = field(default_factory=tuple)
    returned: int = 0


def audit_event(facts: ReadFacts) -> Json:
    """The AuditEvent (R4) of a read: who, which person, what, why, and whether it was released."""
    purpose = [{"coding": [{"system": V3_ACT_REASON, "code": facts.purpose}]}]
    if facts.outcome == "BREAK_GLASS":
        purpose.append(
            {"coding": [{"system": V3_ACT_REASON, "code": "BTG", "display": "break the glass"}]}
        )
    policies = [f"urn:uuid:{g.consent_id}" for g in facts.grants if g.consent_id]
    user: Json = {
        "type": {"text": facts.role},
        "who": {
            "identifier": {"system": CREDENTIAL, "value": facts.credential_id},
            "display": f"{facts.role} at {facts.institution}",
        },
        "requestor": True,
        "purposeOfUse": purpose,
    }
    if policies:
        user["policy"] = policies
    if facts.client_address:
        user["network"] = {"address": facts.client_address, "type": "2"}
    person: Json = {
        "what": ref("Patient", facts.person_id),
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }
    details = [
        {"type": f"access {g.institution}", "valueString": _grant_text(g)} for g in facts.grants
    ]
    details.append({"type": "resources returned", "valueString": str(facts.returned)})
    person["detail"] = details
    request: Json = {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
        "description": facts.path,
    }
    if facts.query:
        request["query"] = base64.b64encode(facts.query.encode()).decode()
    event: Json = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": facts.interaction}],
        "action": _ACTIONS.get(facts.interaction, "E"),
        "recorded": facts.recorded.isoformat(),
        "outcome": "4" if facts.outcome == "DENIED" else "0",
        "purposeOfEvent": purpose,
        "agent": [user, {"who": organization(facts.institution), "requestor": False}],
        "source": {
            "site": "consortium-backbone gateway",
            "observer": {"display": "consortium-backbone gateway"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": [person, request],
    }
    if facts.reason:
        event["outcomeDesc"] = facts.reason
    return event


def _grant_text(grant: Grant) -> str:
    for name, value in (("consent", grant.consent_id), ("referral", grant.referral_id)):
        if value:
            return f"{grant.basis} ({name} {value})"
    return grant.basis
