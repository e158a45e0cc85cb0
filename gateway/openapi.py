"""OpenAPI pieces the routers share: the event schemas of the contracts and problem answers."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from events.registry import EVENT_TYPES
from gateway.problems import PROBLEM_JSON, Problem

_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not JSON.", "content": _PROBLEM},
    401: {"description": "No valid bearer token.", "content": _PROBLEM},
    403: {"description": "The credential may not publish these events.", "content": _PROBLEM},
    413: {"description": "The body is larger than the gateway accepts.", "content": _PROBLEM},
    415: {"description": "The body is not of the expected media type.", "content": _PROBLEM},
    422: {"description": "Invalid events; `errors` locates each field.", "content": _PROBLEM},
}

_EVENT = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in sorted(EVENT_TYPES)]}

EVENT_BODY: dict[str, Any] = {
    "required": True,
    "description": "One event (an object) or a batch (an array of 1 to 1,000 events).",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _EVENT,
                    {"type": "array", "minItems": 1, "maxItems": 1000, "items": _EVENT},
                ]
            }
        }
    },
}


def _event_components() -> dict[str, Any]:
    classes: list[type[BaseModel]] = [*EVENT_TYPES.values(), Problem]
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in classes
    ]
    _, schema = models_json_schema(models, ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.get("$defs", {})
    return defs


def _problem_422s(doc: dict[str, Any]) -> None:
    """Invalid parameters are answered as problem+json (or the registry's shape), not FastAPI's."""
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            content = dict(_PROBLEM)
            if not path.startswith("/v1/"):
                content.update({"application/vnd.schemaregistry.v1+json": {"schema": {}}})
            response["content"] = content


_FHIR = {"application/fhir+json": {"schema": {"type": "object"}}}
_FHIR_FAILURES = {
    400: "Invalid parameters or headers (an OperationOutcome).",
    401: "No valid bearer token.",
    403: "The reader may not see this person's record (audited).",
    404: "No such Patient.",
    406: "Accept or _format asks for other than FHIR R4 JSON.",
    503: "The record database or the read audit is unavailable; nothing was returned.",
}
_V1_FAILURES = {
    401: "No valid bearer token.",
    403: "The credential's role or institution may not do this.",
    503: "The database, Kafka or the projection read is unavailable; retry after Retry-After.",
}


def _documented_failures(doc: dict[str, Any]) -> None:
    """Every authenticated operation documents the failures every one of them can answer.

    /v1 answers problem+json; /fhir answers OperationOutcomes (application/fhir+json, also
    for what FastAPI would answer as 422)."""
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/fhir/") and path != "/fhir/metadata":
                responses.pop("422", None)
                for status, description in _FHIR_FAILURES.items():
                    responses.setdefault(str(status), {"description": description})
                for response in responses.values():
                    response["content"] = dict(_FHIR)
            elif path == "/fhir/metadata":
                responses["200"]["content"] = dict(_FHIR)
                responses["406"] = {"description": _FHIR_FAILURES[406], "content": dict(_FHIR)}
            elif path.startswith("/v1/") and not path.startswith("/v1/schemas"):
                for status, description in _V1_FAILURES.items():
                    response = responses.setdefault(str(status), {"description": description})
                    response.setdefault("content", dict(_PROBLEM))


def install(app: FastAPI) -> None:
    """Build the OpenAPI document once, with every event type as a component."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components.update(_event_components())
            components["RegistryError"] = {
                "type": "object",
                "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}},
                "required": ["error_code", "message"],
            }
            _problem_422s(doc)
            _documented_failures(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
