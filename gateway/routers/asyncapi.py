"""`GET /asyncapi.json`: every topic and event of the consortium in one document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.asyncapi import asyncapi_document
from gateway.deps import CatalogDep, ConsortiumIdDep

router = APIRouter(tags=["contracts"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of the topics and their messages")
def asyncapi(catalog: CatalogDep, consortium_id: ConsortiumIdDep) -> dict[str, Any]:
    """Generated from the schema catalog and the topic declarations."""
    return asyncapi_document(catalog, consortium_id)
