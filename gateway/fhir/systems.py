"""The URIs the FHIR API names things by: identifier systems, code systems, resource ids.

The record holds no resident id (身份证号) and no name: a person is known by the consortium
person id the patient index assigned, and by each member's local patient id. docs/fhir.md lists
every URI below and why.
"""

from __future__ import annotations

import uuid
from typing import Any

Json = dict[str, Any]

BASE = "https://consortium-backbone.example/fhir"
PERSON_ID = f"{BASE}/sid/person-id"  # the patient index's person id (a UUID)
INSTITUTION = f"{BASE}/sid/institution"  # the consortium's member code, e.g. 439901-C01
CREDENTIAL = f"{BASE}/sid/credential"  # a gateway credential id (who read, in an AuditEvent)
# Each member numbers its own patients, encounters, orders and results: the system names it.
LOCAL = {
    "patient": f"{BASE}/sid/patient-local-id",
    "encounter": f"{BASE}/sid/encounter-id",
    "order": f"{BASE}/sid/order-id",
    "result": f"{BASE}/sid/result-id",
}
REFERRAL_ID = "urn:ietf:rfc:3986"  # referral ids are UUIDs, unique across the consortium
DICOM_UID = "urn:dicom:uid"

# The events' code systems → FHIR system URIs. The Chinese national clinical editions extend
# WHO ICD-10 (I10.x00) and ICD-9-CM-3, so the WHO URIs would claim codes they do not define.
CODE_SYSTEMS = {
    "LOINC": "http://loinc.org",
    "DICOM": "http://dicom.nema.org/resources/ontology/DCM",
    "ICD-10": f"{BASE}/CodeSystem/icd-10-cn-clinical",
    "ICD-9-CM-3": f"{BASE}/CodeSystem/icd-9-cm-3-cn-clinical",
    "NHSA": f"{BASE}/CodeSystem/nhsa-drug",
    "LOCAL": f"{BASE}/CodeSystem/consortium-local",
}
_NAMESPACE = uuid.UUID("6f1c1b52-3d3e-4c55-9a43-5e0f1f0c7a10")

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
SNOMED = "http://snomed.info/sct"


def code_system(name: str) -> str:
    """The FHIR URI of an event's code system (an unknown name gets a consortium URI)."""
    known = CODE_SYSTEMS.get(name)
    if known is not None:
        return known
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower()) or "unknown"
    return f"{BASE}/CodeSystem/{slug}"


def code_token(value: str | None) -> str | None:
    """A member's code as a FHIR `code` (no outer or repeated white space), None when blank."""
    return (" ".join(value.split()) or None) if value else None


def coding(system: str | None, code: str | None, display: str | None = None) -> Json:
    """A Coding from an event's (system, code, display); absent parts left out."""
    found: Json = {}
    if system:
        found["system"] = code_system(system)
    if token := code_token(code):
        found["code"] = token
    if display and display.strip():
        found["display"] = display
    return found


def concept(system: str | None, code: str | None, display: str | None = None) -> Json:
    """A CodeableConcept of one coding, with its display as text."""
    found: Json = {"coding": [coding(system, code, display)]} if code_token(code) else {}
    if display and display.strip():
        found["text"] = display
    return found or {"text": "unknown"}


def resource_id(resource_type: str, institution: str, local_id: str) -> str:
    """A stable FHIR id for a member's own numbering (local ids may hold any text)."""
    return str(uuid.uuid5(_NAMESPACE, f"{resource_type}|{institution}|{local_id}"))


def local_identifier(kind: str, institution: str, value: str) -> Json:
    """A member's own identifier of a patient, encounter, order or result."""
    return {
        "system": f"{LOCAL[kind]}/{institution}",
        "value": value,
        "assigner": organization(institution),
    }


def organization(institution: str) -> Json:
    """A logical reference to a member (the API serves no Organization resources)."""
    return {
        "type": "Organization",
        "identifier": {"system": INSTITUTION, "value": institution},
        "display": institution,
    }


def patient(person_id: str) -> Json:
    """The reference to a consortium person."""
    return {"reference": f"Patient/{person_id}"}


def ref(resource_type: str, resource_id: str) -> Json:
    """A literal reference to a resource this API serves."""
    return {"reference": f"{resource_type}/{resource_id}"}
