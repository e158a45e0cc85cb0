"""FULL_TRANSITIVE compatibility of Avro schemas, checked statically and with fastavro both ways."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

Schema = Any  # an Avro schema in its JSON form (resolved: every named type defined inline)
Names = Mapping[str, Mapping[str, Any]]

# Avro's allowed promotions, writer type -> reader types (the specification's resolution rules).
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
NAMED = ("record", "error", "enum", "fixed")


def _names(node: Schema, namespace: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type a schema defines, by full name."""
    out = {} if out is None else out
    if isinstance(node, list):
        for branch in node:
            _names(branch, namespace, out)
    elif isinstance(node, dict):
        kind = node["type"]
        if kind in NAMED:
            name = node["name"]
            ns = name.rsplit(".", 1)[0] if "." in name else node.get("namespace", namespace)
            out[name if "." in name else f"{ns}.{name}".lstrip(".")] = node
            for f in node.get("fields", []):
                _names(f["type"], ns, out)
        elif kind == "array":
            _names(node["items"], namespace, out)
        elif kind == "map":
            _names(node["values"], namespace, out)
    return out


def _deref(node: Schema, names: Names) -> Schema:
    """The definition behind a name reference; a primitive with attributes becomes its name."""
    if isinstance(node, str) and node in names:
        return names[node]
    if (
        isinstance(node, dict)
        and isinstance(node["type"], str)
        and node["type"]
        not in (
            *NAMED,
            "array",
            "map",
        )
    ):
        return node[
            "type"
        ]  # {"type": "long", "logicalType": ...}: resolution ignores logical types
    return node


def _kind(node: Schema) -> str:
    return node if isinstance(node, str) else "union" if isinstance(node, list) else node["type"]


def _short(node: Mapping[str, Any]) -> str:
    return str(node["name"]).rsplit(".", 1)[-1]


def _matches(writer: Schema, reader: Schema) -> bool:
    """Whether a reader branch can take writer data at this level (names, kinds or promotion)."""
    wk, rk = _kind(writer), _kind(reader)
    if wk in NAMED and rk == wk:
        return _short(writer) == _short(reader) or _short(writer) in reader.get("aliases", [])
    return wk == rk or rk in PROMOTIONS.get(wk, frozenset())


class _Static:
    """Walks a writer and a reader schema side by side, applying the specification's rules."""

    def __init__(self, writer: Schema, reader: Schema) -> None:
        self.wnames, self.rnames = _names(writer), _names(reader)
        self.problems: list[str] = []
        self._seen: set[tuple[int, int]] = set()

    def walk(self, w: Schema, r: Schema, path: str) -> None:
        w, r = _deref(w, self.wnames), _deref(r, self.rnames)
        if (id(w), id(r)) in self._seen:
            return
        self._seen.add((id(w), id(r)))
        if isinstance(w, list):
            for branch in w:
                self.walk(branch, r, f"{path}<{_kind(_deref(branch, self.wnames))}>")
            return
        if isinstance(r, list):
            match = next((b for b in r if _matches(w, _deref(b, self.rnames))), None)
            if match is None:
                self.problems.append(f"{path}: no reader union branch takes writer {_kind(w)}")
            else:
                self.walk(w, match, path)
            return
        if not _matches(w, r):
            self.problems.append(f"{path}: type changed from {_kind(w)} to {_kind(r)}")
            return
        self._compound(w, r, path)

    def _compound(self, w: Schema, r: Schema, path: str) -> None:
        kind = _kind(w)
        if kind in ("record", "error"):
            by_name = {f["name"]: f for f in w["fields"]}
            for f in r["fields"]:
                wf = next(
                    (by_name[n] for n in (f["name"], *f.get("aliases", [])) if n in by_name), None
                )
                if wf is not None:
                    self.walk(wf["type"], f["type"], f"{path}.{f['name']}")
                elif "default" not in f:
                    self.problems.append(f"{path}.{f['name']}: reader field has no default")
        elif kind == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problems.append(f"{path}: reader enum lacks {missing} and has no default")
        elif kind == "fixed" and w["size"] != r["size"]:
            self.problems.append(f"{path}: fixed size changed from {w['size']} to {r['size']}")
        elif kind == "array":
            self.walk(w["items"], r["items"], f"{path}[]")
        elif kind == "map":
            self.walk(w["values"], r["values"], f"{path}{{}}")


def static_problems(writer: Schema, reader: Schema) -> list[str]:
    """Problems the specification's resolution rules find when reader reads writer's data."""
    walker = _Static(writer, reader)
    walker.walk(writer, reader, "$")
    return walker.problems


def _width(node: Schema, names: Names, seen: frozenset[str] = frozenset()) -> int:
    """The most options any enum or union in the schema offers."""
    node = names.get(node, node) if isinstance(node, str) else node
    if isinstance(node, list):
        return max(len(node), *(_width(b, names, seen) for b in node))
    if not isinstance(node, dict):
        return 1
    kind = node["type"]
    if kind == "enum":
        return len(node["symbols"])
    if kind in ("record", "error") and node["name"] not in seen:
        inner = seen | {node["name"]}
        return max([1, *(_width(f["type"], names, inner) for f in node["fields"])])
    if kind in ("array", "map"):
        return _width(node["items" if kind == "array" else "values"], names, seen)
    return 1


_PRIMITIVE_SAMPLES: Mapping[str, Any] = {
    "null": None,
    "float": 1.5,
    "double": 2.5,
    "bytes": b"\x01",
    "int": 7,
    "long": 7,
}


def _variant(node: Schema, i: int, names: Names) -> Any:
    """A value taking option i (modulo their count) at every enum and union: the edge cases."""
    node = names.get(node, node) if isinstance(node, str) else node
    if isinstance(node, list):
        return _variant(node[i % len(node)], i, names)
    if isinstance(node, str):
        return bool(i % 2) if node == "boolean" else _PRIMITIVE_SAMPLES.get(node, f"s{i}")
    kind = node["type"]
    builders: dict[str, Any] = {
        "record": lambda: {f["name"]: _variant(f["type"], i, names) for f in node["fields"]},
        "enum": lambda: node["symbols"][i % len(node["symbols"])],
        "fixed": lambda: bytes(node["size"]),
        "array": lambda: [_variant(node["items"], i, names)] * (i % 2),
        "map": lambda: {"k": _variant(node["values"], i, names)} if i % 2 else {},
    }
    builders["error"] = builders["record"]
    if kind in builders:
        return builders[kind]()
    # A primitive with a logical type: uuid needs a parseable value, the others take the base.
    return str(uuid.UUID(int=i)) if node.get("logicalType") == "uuid" else _variant(kind, i, names)


def samples(schema: Schema, count: int = 30) -> Iterator[Any]:
    """Random records plus one per enum symbol and union branch at every position."""
    names = _names(schema)
    for i in range(_width(schema, names)):
        yield _variant(schema, i, names)
    yield from generate_many(parse_schema(schema), count)


def _read(data: bytes, writer: Any, reader: Any) -> Any:
    return schemaless_reader(io.BytesIO(data), writer, reader)


def resolution_problems(writer: Schema, reader: Schema, count: int = 30) -> list[str]:
    """Problems fastavro's schema resolution meets reading writer's sample data with reader."""
    pw, pr = parse_schema(writer), parse_schema(reader)
    problems: list[str] = []
    for record in samples(writer, count):
        out = io.BytesIO()
        schemaless_writer(out, pw, record)
        data = out.getvalue()
        try:
            _read(data, pw, None)
        except Exception:  # a sample the writer cannot read back says nothing about the reader
            continue
        try:
            _read(data, pw, pr)
        except Exception as exc:  # SchemaResolutionError, or a failure inside resolution
            message = f"fastavro: {type(exc).__name__}: {exc}"
            if message not in problems:
                problems.append(message)
    return problems


def reading_problems(writer: Schema, reader: Schema) -> list[str]:
    """Every problem, static and by resolution, when reader reads data written with writer."""
    return [*static_problems(writer, reader), *resolution_problems(writer, reader)]


def full_problems(
    new: Schema, old: Schema, new_name: str = "new", old_name: str = "old"
) -> list[str]:
    """FULL compatibility: each schema reads the other's data; an empty list means compatible."""
    return [
        *(f"{new_name} reading {old_name} data: {p}" for p in reading_problems(old, new)),
        *(f"{old_name} reading {new_name} data: {p}" for p in reading_problems(new, old)),
    ]


def full_transitive_problems(new: Schema, earlier: Sequence[tuple[str, Schema]]) -> list[str]:
    """FULL_TRANSITIVE: new is FULL-compatible with every earlier (name, schema) version."""
    return [p for name, old in earlier for p in full_problems(new, old, "new", name)]
