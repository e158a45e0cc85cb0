"""The consortium person as a FHIR Patient: identifiers only (the record holds no demographics)."""

from __future__ import annotations

from collections.abc import Collection

from events.validation import normalize_resident_id
from gateway.fhir.mapped import blank
from gateway.fhir.systems import PERSON_ID, V2_0203, Json, local_identifier, ref
from projections.record.queries import Person


def shown_local_id(local_id: str) -> bool:
    """Whether a member's patient id may be shown: not blank, and not a resident id number (a
    member that numbers its patients by 身份证号 would have the Patient show it in clear)."""
    if blank(local_id):
        return False
    try:
        normalize_resident_id(local_id)
    except ValueError:
        return True
    return False


def patient_resource(person: Person, visible: Collection[str]) -> Json:
    """The person's Patient, showing the local records of the members the reader may see
    (their ids, unless an id is a resident id number).

    A retired (merged) id reads as an inactive Patient replaced by the survivor.
    """
    if person.asked != person.person_id:
        return {
            "resourceType": "Patient",
            "id": person.asked,
            "identifier": [{"use": "old", "system": PERSON_ID, "value": person.asked}],
            "active": False,
            "link": [{"other": ref("Patient", person.person_id), "type": "replaced-by"}],
        }
    locals_ = [
        {
            **local_identifier("patient", institution, local_id),
            "use": "usual",
            "type": {
                "coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]
            },
        }
        for institution, local_id in person.local_patients
        if institution in visible and shown_local_id(local_id)
    ]
    resource: Json = {
        "resourceType": "Patient",
        "id": person.person_id,
        "identifier": [
            {"use": "official", "system": PERSON_ID, "value": person.person_id},
            *locals_,
        ],
        "active": True,
    }
    replaced = [i for i in person.merged_ids if i != person.person_id]
    if replaced:
        resource["link"] = [{"other": ref("Patient", i), "type": "replaces"} for i in replaced]
    return resource
