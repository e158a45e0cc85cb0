"""The repository's catalog of Avro schemas: subjects, versions, global ids and fingerprints."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
CATALOG_FILE = "catalog.json"
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})

Schema = Any  # an Avro schema in its JSON form: a str, a list (union) or a dict


class CatalogError(ValueError):
    """The catalog or one of its schema files breaks a rule; the message says which."""


@dataclass(frozen=True)
class SchemaVersion:
    """One registered schema: a subject's version with its global id, resolved self-contained."""

    subject: str
    version: int
    id: int
    file: str
    schema: Mapping[str, Any] = field(repr=False, compare=False)
    canonical_form: str = field(repr=False)
    fingerprint: str
    content_sha256: str

    @property
    def event_type(self) -> str:
        """The record's simple name, which is the event type."""
        return self.subject.rsplit(".", 1)[-1]

    @property
    def schema_json(self) -> str:
        """The resolved schema as compact JSON, as a Confluent registry serves it."""
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)


def _full_name(node: Mapping[str, Any], namespace: str) -> tuple[str, str]:
    """A named type's full name and the namespace its children inherit (Avro name rules)."""
    name = str(node["name"])
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    ns = str(node.get("namespace", namespace) or "")
    return (f"{ns}.{name}" if ns else name), ns


class _Resolver:
    """Inlines named common types into one schema, defining each name once, in document order."""

    def __init__(self, common: Mapping[str, Schema], where: str) -> None:
        self.common = common
        self.where = where
        self.defined: dict[str, dict[str, Any]] = {}
        self._open: list[str] = []

    def resolve(self, node: Schema, namespace: str) -> Schema:
        """Return node with every reference to a common type replaced by its first definition."""
        if isinstance(node, str):
            return self._reference(node, namespace)
        if isinstance(node, list):
            return [self.resolve(branch, namespace) for branch in node]
        if not isinstance(node, dict) or "type" not in node:
            raise CatalogError(f"{self.where}: not an Avro schema: {node!r:.80}")
        kind = node["type"]
        out = dict(node)
        if kind in NAMED:
            full, child_ns = _full_name(node, namespace)
            if full in self.defined:
                raise CatalogError(f"{self.where}: type {full} is defined twice")
            self.defined[full] = out
            if kind in ("record", "error"):
                self._open.append(full)
                out["fields"] = [
                    {**f, "type": self.resolve(f["type"], child_ns)} for f in node["fields"]
                ]
                self._open.pop()
        elif kind == "array":
            out["items"] = self.resolve(node["items"], namespace)
        elif kind == "map":
            out["values"] = self.resolve(node["values"], namespace)
        elif not isinstance(kind, str) or kind not in PRIMITIVES:
            out["type"] = self.resolve(kind, namespace)
        return out

    def _reference(self, name: str, namespace: str) -> Schema:
        if name in PRIMITIVES:
            return name
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        if full in self._open:
            # A decoder recurses per level; hostile input could nest a million deep.
            raise CatalogError(f"{self.where}: recursive type {full} is not allowed")
        if full in self.defined:
            return full
        if full in self.common:
            return self.resolve(copy.deepcopy(self.common[full]), namespace)
        raise CatalogError(f"{self.where}: unknown type {name}")


def min_encoded_size(node: Schema, names: Mapping[str, Mapping[str, Any]]) -> int:
    """The fewest bytes a value of this resolved schema can encode to."""
    if isinstance(node, str):
        if node in names:
            return min_encoded_size(names[node], names)
        return {"null": 0, "float": 4, "double": 8}.get(node, 1)
    if isinstance(node, list):
        return 1  # the branch index
    kind = node["type"]
    if kind in ("record", "error"):
        return sum(min_encoded_size(f["type"], names) for f in node["fields"])
    if kind == "fixed":
        return int(node["size"])
    # enum index, array or map block count: one byte at least; else a primitive with attributes
    return 1 if kind in ("enum", "array", "map") else min_encoded_size(kind, names)


def _check_arrays(node: Schema, names: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Refuse arrays whose items can encode to zero bytes: a hostile block count would spin."""
    if isinstance(node, list):
        for branch in node:
            _check_arrays(branch, names, where)
    elif isinstance(node, dict):
        kind = node["type"]
        if kind == "array":
            if min_encoded_size(node["items"], names) == 0:
                raise CatalogError(f"{where}: array items may encode to zero bytes")
            _check_arrays(node["items"], names, where)
        elif kind == "map":
            _check_arrays(node["values"], names, where)
        elif kind in ("record", "error"):
            for f in node["fields"]:
                _check_arrays(f["type"], names, where)


def _read_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{where}: file {path.name} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{where}: {path.name} is not valid JSON: {exc}") from None


def resolve_schema(
    raw: Mapping[str, Any], common: Mapping[str, Schema], where: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Inline the common types into a raw schema and check the decoder-safety rules."""
    resolver = _Resolver(common, where)
    resolved: dict[str, Any] = resolver.resolve(dict(raw), "")
    _check_arrays(resolved, resolver.defined, where)
    try:
        parse_schema(resolved)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise CatalogError(f"{where}: fastavro refuses the schema: {exc}") from None
    return resolved, resolver.defined


def build_version(
    subject: str, version: int, schema_id: int, file: str, resolved: Mapping[str, Any]
) -> SchemaVersion:
    """Compute the canonical form and fingerprints of one resolved schema."""
    pcf = to_parsing_canonical_form(dict(resolved))
    content = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SchemaVersion(
        subject=subject,
        version=version,
        id=schema_id,
        file=file,
        schema=resolved,
        canonical_form=pcf,
        fingerprint=fingerprint(pcf, "SHA-256"),
        content_sha256=hashlib.sha256(content.encode()).hexdigest(),
    )


class Catalog:
    """Every registered schema by id and by subject, loaded and validated from schemas/."""

    def __init__(
        self, root: Path, versions: list[SchemaVersion], retired_ids: frozenset[int]
    ) -> None:
        self.root = root
        self.retired_ids = retired_ids
        self._by_id = {v.id: v for v in versions}
        self._by_subject: dict[str, list[SchemaVersion]] = {}
        for v in sorted(versions, key=lambda v: (v.subject, v.version)):
            self._by_subject.setdefault(v.subject, []).append(v)
        self._by_event_type = {s.rsplit(".", 1)[-1]: s for s in self._by_subject}
        self._parsed: dict[int, Any] = {}

    @classmethod
    def load(cls, root: Path = SCHEMAS_DIR) -> Catalog:
        """Read catalog.json and its schema files, refusing any broken rule."""
        return _load(root)

    def subjects(self) -> list[str]:
        """Every subject, sorted."""
        return sorted(self._by_subject)

    def versions(self, subject: str) -> list[SchemaVersion]:
        """A subject's versions, oldest first."""
        try:
            return list(self._by_subject[subject])
        except KeyError:
            raise KeyError(f"unknown subject {subject}") from None

    def latest(self, subject: str) -> SchemaVersion:
        """A subject's newest version."""
        return self.versions(subject)[-1]

    def all(self) -> list[SchemaVersion]:
        """Every registered schema, by id."""
        return [self._by_id[i] for i in sorted(self._by_id)]

    def schema_by_id(self, schema_id: int) -> SchemaVersion:
        """The schema registered under a global id."""
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise KeyError(f"unknown schema id {schema_id}") from None

    def id_for(self, subject: str, version: int) -> int:
        """The global id of one version of a subject."""
        for v in self.versions(subject):
            if v.version == version:
                return v.id
        raise KeyError(f"{subject} has no version {version}")

    def subject_for_event_type(self, event_type: str) -> str:
        """The subject whose record's simple name is this event type."""
        try:
            return self._by_event_type[event_type]
        except KeyError:
            raise KeyError(f"unknown event type {event_type}") from None

    def latest_id_for_event_type(self, event_type: str) -> int:
        """The id of the newest schema of an event type."""
        return self.latest(self.subject_for_event_type(event_type)).id

    def parsed(self, schema_id: int) -> Any:
        """The fastavro-parsed schema of an id, parsed once."""
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = parse_schema(dict(self.schema_by_id(schema_id).schema))
            self._parsed[schema_id] = parsed
        return parsed


def _load_common(root: Path, entries: Any) -> dict[str, Schema]:
    """Read the shared named types: full name -> raw schema."""
    if not isinstance(entries, list):
        raise CatalogError("catalog.json: 'common' must be a list")
    common: dict[str, Schema] = {}
    for entry in entries:
        name, file = entry["name"], entry["file"]
        raw = _read_json(root / file, f"common {name}")
        if not isinstance(raw, dict) or raw.get("type") not in NAMED:
            raise CatalogError(f"common {name}: {file} is not a named type")
        if _full_name(raw, "")[0] != name:
            raise CatalogError(f"common {name}: {file} defines {_full_name(raw, '')[0]}")
        if name in common:
            raise CatalogError(f"common {name}: listed twice")
        common[name] = raw
    return common


def _load(root: Path) -> Catalog:
    doc = _read_json(root / CATALOG_FILE, CATALOG_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("subjects"), dict):
        raise CatalogError("catalog.json: needs an object with 'subjects'")
    retired = frozenset(int(i) for i in doc.get("retired_ids", []))
    common = _load_common(root, doc.get("common", []))
    listed = {str(e["file"]) for e in doc.get("common", [])}
    versions: list[SchemaVersion] = []
    seen_ids: dict[int, str] = {}
    for subject, entries in doc["subjects"].items():
        numbers = [int(e["version"]) for e in entries]
        if numbers != list(range(1, len(entries) + 1)):
            raise CatalogError(f"{subject}: versions must count 1, 2, 3 … in order: {numbers}")
        for entry in entries:
            where = f"{subject} v{entry['version']}"
            schema_id, file = entry["id"], str(entry["file"])
            if not isinstance(schema_id, int) or isinstance(schema_id, bool) or schema_id < 1:
                raise CatalogError(f"{where}: id must be a positive integer")
            if schema_id in retired:
                raise CatalogError(f"{where}: id {schema_id} is retired and never reused")
            if schema_id in seen_ids:
                raise CatalogError(f"{where}: id {schema_id} is also {seen_ids[schema_id]}")
            seen_ids[schema_id] = where
            listed.add(file)
            raw = _read_json(root / file, where)
            if not isinstance(raw, dict) or raw.get("type") != "record":
                raise CatalogError(f"{where}: {file} is not a record schema")
            if _full_name(raw, "")[0] != subject:
                raise CatalogError(f"{where}: record is {_full_name(raw, '')[0]}, not {subject}")
            # A version may pin other files for common names (a common type's later version).
            pinned = {n: _read_json(root / f, where) for n, f in entry.get("common", {}).items()}
            listed.update(entry.get("common", {}).values())
            resolved, _ = resolve_schema(raw, {**common, **pinned}, where)
            versions.append(build_version(subject, entry["version"], schema_id, file, resolved))
    orphans = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.avsc")
        if str(p.relative_to(root)) not in listed
    )
    if orphans:
        raise CatalogError(f"schema files not listed in catalog.json: {', '.join(orphans)}")
    simple = [s.rsplit(".", 1)[-1] for s in doc["subjects"]]
    if len(set(simple)) != len(simple):
        raise CatalogError("two subjects share one simple name (event type)")
    return Catalog(root, versions, retired)


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The repository's own catalog, loaded once per process."""
    return Catalog.load()
