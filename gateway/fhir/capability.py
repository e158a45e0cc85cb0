"""The CapabilityStatement at /fhir/metadata: what this read-only server offers."""

from __future__ import annotations

from gateway.fhir.record import RECORD_TYPES
from gateway.fhir.systems import Json

FHIR_VERSION = "4.0.1"
# Every type a record yields (what $everything may hold besides Patient), searchable by patient.
SEARCHABLE = RECORD_TYPES
_PAGING = [
    {
        "name": "_count",
        "type": "number",
        "documentation": "entries per page (default 50; more than 500 is served as 500)",
    },
    {"name": "_cursor", "type": "string", "documentation": "opaque; follow the Bundle's next link"},
]
_SECURITY = (
    "Bearer tokens (`consortium credentials issue`). Clinicians read what another member recorded"
    " only with the person's active consent, an active referral between the two members, or"
    " break-glass (header X-Break-Glass: <percent-encoded reason>, flagged for review);"
    " X-Purpose-Of-Use: TREAT (default), ETREAT, COC. Every read, denied ones included, is"
    " audited before data is returned, with an AuditEvent shape in the audit table."
)


def capability_statement(base: str, software_version: str, date: str) -> Json:
    """The server's CapabilityStatement (kind instance, JSON only, read and search only)."""
    patient_search = [{"name": "patient", "type": "reference", "documentation": "required"}]
    resources: list[Json] = [
        {
            "type": "Patient",
            "interaction": [{"code": "read"}],
            "versioning": "no-version",
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "paged: _count (default 50; more than 500 is served as"
                    " 500) and _cursor (opaque; follow the Bundle's next link)",
                }
            ],
        }
    ]
    resources += [
        {
            "type": name,
            "interaction": [{"code": "search-type"}],
            "versioning": "no-version",
            "searchParam": patient_search + _PAGING,
        }
        for name in SEARCHABLE
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "consortium-backbone",
        "kind": "instance",
        "software": {"name": "consortium-backbone gateway", "version": software_version},
        "implementation": {
            "description": "The shared record (共享健康档案), read-only",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [{"text": "Bearer token (a consortium credential)"}],
                    "description": _SECURITY,
                },
                "resource": resources,
            }
        ],
    }
