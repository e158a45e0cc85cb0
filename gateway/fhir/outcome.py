"""OperationOutcome: how the FHIR API answers an error."""

from __future__ import annotations

from gateway.fhir.systems import Json

# HTTP status → OperationOutcome issue type (FHIR issue-type value set).
_ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    422: "invalid",
    503: "transient",
}


def operation_outcome(status: int, diagnostics: str, code: str | None = None) -> Json:
    """An OperationOutcome with one issue for an HTTP error status (its issue type unless
    `code` names another)."""
    severity = "error" if status < 500 else "fatal"
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": code or _ISSUE_TYPES.get(status, "exception"),
                "diagnostics": diagnostics or "error",
            }
        ],
    }
