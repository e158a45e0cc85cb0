"""The schema catalog, read-only, under the Confluent Schema Registry REST paths and shapes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from events.catalog import Catalog, SchemaVersion
from gateway.deps import CatalogDep

# Registry clients expect this media type and the registry's own error shape, not problem+json.
REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"


class RegistryJSONResponse(JSONResponse):
    """JSON in the Schema Registry's media type."""

    media_type = REGISTRY_JSON


_ERROR = {REGISTRY_JSON: {"schema": {"$ref": "#/components/schemas/RegistryError"}}}
router = APIRouter(
    tags=["schema registry"],
    default_response_class=RegistryJSONResponse,
    responses={
        404: {
            "description": "40401 subject, 40402 version, 40403 schema not found",
            "content": _ERROR,
        },
        422: {"description": "42202 invalid version, or an invalid path parameter"},
    },
)


def _answer(body: Any, status: int = 200) -> JSONResponse:
    return RegistryJSONResponse(body, status_code=status)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return _answer({"error_code": code, "message": message}, status)


def _subject_not_found(subject: str) -> JSONResponse:
    return _error(404, 40401, f"Subject '{subject}' not found.")


def _version_json(v: SchemaVersion) -> dict[str, Any]:
    return {"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema_json}


def _find_version(catalog: Catalog, subject: str, version: str) -> SchemaVersion | JSONResponse:
    if subject not in catalog.subjects():
        return _subject_not_found(subject)
    versions = catalog.versions(subject)
    if version in ("latest", "-1"):
        return versions[-1]
    if not version.isdigit() or not 1 <= int(version) <= 2**31 - 1:
        return _error(
            422,
            42202,
            f"The specified version '{version}' is not a valid version id. Allowed values are"
            ' between [1, 2^31-1] and the string "latest"',
        )
    for v in versions:
        if v.version == int(version):
            return v
    return _error(404, 40402, f"Version {version} not found.")


@router.get("/schemas/ids/{schema_id}", summary="The schema registered under a global id")
def schema_by_id(schema_id: int, catalog: CatalogDep) -> JSONResponse:
    """`{"schema": "<resolved Avro JSON>"}`; 40403 when the id is unknown."""
    try:
        found = catalog.schema_by_id(schema_id)
    except KeyError:
        return _error(404, 40403, f"Schema {schema_id} not found")
    return _answer({"schema": found.schema_json})


@router.get("/schemas/ids/{schema_id}/schema", summary="The bare schema of a global id")
def bare_schema_by_id(schema_id: int, catalog: CatalogDep) -> JSONResponse:
    """The schema itself (no wrapper); 40403 when the id is unknown."""
    try:
        return _answer(catalog.schema_by_id(schema_id).schema)
    except KeyError:
        return _error(404, 40403, f"Schema {schema_id} not found")


@router.get("/schemas/types", summary="Schema types this registry serves")
def schema_types() -> JSONResponse:
    """Only Avro."""
    return _answer(["AVRO"])


@router.get("/subjects", summary="Every subject (RecordNameStrategy: the record's full name)")
def subjects(catalog: CatalogDep) -> JSONResponse:
    """The sorted list of subjects."""
    return _answer(catalog.subjects())


@router.get("/subjects/{subject}/versions", summary="The versions of a subject")
def subject_versions(subject: str, catalog: CatalogDep) -> JSONResponse:
    """`[1, 2, …]`; 40401 when the subject is unknown."""
    if subject not in catalog.subjects():
        return _subject_not_found(subject)
    return _answer([v.version for v in catalog.versions(subject)])


@router.get("/subjects/{subject}/versions/{version}", summary="One version of a subject")
def subject_version(subject: str, version: str, catalog: CatalogDep) -> JSONResponse:
    """subject, version, id and schema; `latest` (or -1) is the newest version."""
    found = _find_version(catalog, subject, version)
    return found if isinstance(found, JSONResponse) else _answer(_version_json(found))


@router.get("/subjects/{subject}/versions/{version}/schema", summary="The bare schema of a version")
def subject_version_schema(subject: str, version: str, catalog: CatalogDep) -> JSONResponse:
    """The schema itself of one version of a subject."""
    found = _find_version(catalog, subject, version)
    return found if isinstance(found, JSONResponse) else _answer(found.schema)


@router.get("/config", summary="The global compatibility level")
def config() -> JSONResponse:
    """FULL_TRANSITIVE, as `consortium schemas check` enforces."""
    return _answer({"compatibilityLevel": "FULL_TRANSITIVE"})
