"""An AsyncAPI 3.0 document of the consortium's topics and events, generated from the catalog."""

from __future__ import annotations

from typing import Any

from events.catalog import Catalog
from events.registry import model_for
from events.topics import EVENT_TOPICS, MEMBER_FAMILIES, Family

AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"


def _message(catalog: Catalog, subject: str) -> dict[str, Any]:
    latest = catalog.latest(subject)
    model = model_for(latest.event_type)
    return {
        "name": latest.event_type,
        "title": latest.event_type,
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {
                "event_type": {"type": "string", "const": latest.event_type},
                "schema_id": {"type": "string", "description": "the global schema id, decimal"},
                "source": {"type": "string", "description": "institution code of the publisher"},
                "traceparent": {"type": "string", "description": "W3C trace context"},
            },
        },
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": dict(latest.schema)},
        "bindings": {
            "kafka": {
                "bindingVersion": "0.5.0",
                "key": {"type": "string", "description": EVENT_TOPICS[model.family].key},
                "schemaIdLocation": "payload",
                "schemaIdPayloadEncoding": "confluent",
                "schemaLookupStrategy": "RecordNameStrategy",
            }
        },
        "x-schema-ids": [v.id for v in catalog.versions(subject)],
        "x-subject": subject,
    }


def asyncapi_document(catalog: Catalog, consortium_id: str) -> dict[str, Any]:
    """Every event topic as a channel with the messages of its family."""
    # Event topics carry event contracts only; the bureau streams are not hospital events.
    messages = {
        s.rsplit(".", 1)[-1]: _message(catalog, s)
        for s in catalog.subjects()
        if s.startswith("consortium.events.")
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for family in Family:
        spec = EVENT_TOPICS[family]
        names = sorted(n for n in messages if model_for(n).family is family)
        cleanup = spec.config(spec.replication_factor)["cleanup.policy"]
        kept = "compacted: the latest record per key" if cleanup == "compact" else "forever"
        channels[family.value] = {
            "address": spec.name(consortium_id),
            "description": f"{family.value} events; key: {spec.key}; retention: {kept}",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "kafka": {
                    "bindingVersion": "0.5.0",
                    "partitions": spec.partitions,
                    "replicas": spec.replication_factor,
                    "topicConfiguration": {
                        "retention.ms": spec.retention_ms,
                        "min.insync.replicas": spec.min_insync_replicas,
                        "cleanup.policy": [cleanup],
                    },
                }
            },
        }
        operations[f"publish_{family.value}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{family.value}"},
            "summary": (
                f"member institutions publish {family.value} events (or via the gateway)"
                if family in MEMBER_FAMILIES
                else f"the projection that derives them publishes {family.value} events"
                " (never members, never the gateway)"
            ),
            "messages": [{"$ref": f"#/channels/{family.value}/messages/{n}"} for n in names],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"consortium-backbone events of consortium {consortium_id}",
            "version": "1.0.0",
            "description": "Confluent-framed Avro (magic byte 0, 4-byte schema id, Avro body);"
            " schemas are served by the gateway under the Schema Registry paths.",
        },
        "defaultContentType": "application/octet-stream",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
