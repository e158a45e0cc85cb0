"""Avro binary writers generated per schema: the bytes of fastavro's `schemaless_writer`, faster.

fastavro's writer is generic: for every value it dispatches on the schema node, looks named
types and logical types up, and checks ABCs (~20 µs for one of the gateway's events). A writer
generated from one schema does only what that schema needs, in straight-line Python (~5 µs).

Only what the catalog uses is generated: records, enums, arrays, `["null", T]` unions, string,
int, long, double, boolean, and the logical types uuid, timestamp-millis and date. A schema
using anything else gets no writer (`compile_writer` returns None). A generated writer raises
`Unsupported` (or whatever Python raises) for a value it does not handle the way fastavro
does — naive datetimes, a missing field, a tuple naming a union branch, a value of the wrong
type — and its caller then writes the record with fastavro, which encodes it or names the
error. So where a generated writer answers, its bytes are fastavro's
(tests/unit/test_avro_writer.py proves it with hypothesis on every schema of the catalog)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

Writer = Callable[[Mapping[str, Any], bytearray], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_BYTES = [bytes([b]) for b in range(128)]
_INLINE = {("string", None), ("string", "uuid"), ("long", "timestamp-millis")}
_PRIMITIVES = {"string", "int", "long", "double", "boolean", "null"}


class Unsupported(ValueError):  # noqa: N818 - a signal to the caller, not a failure
    """A value this writer leaves to fastavro."""


def _varint(n: int) -> bytes:
    """Avro's zig-zag varint of a long (fastavro refuses what does not fit 64 bits)."""
    if type(n) is not int or not _LONG_MIN <= n <= _LONG_MAX:
        raise Unsupported("not a long")
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _BYTES[z]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _int(n: int) -> bytes:
    if type(n) is not int or not _INT_MIN <= n <= _INT_MAX:
        raise Unsupported("not an int")
    return _varint(n)


def _date(d: date | int) -> bytes:
    if type(d) is int:
        return _int(d)
    if type(d) is not date:
        raise Unsupported("not a date")
    return _int(d.toordinal() - _EPOCH_ORDINAL)


def _double(x: float) -> bytes:
    if type(x) is not float and type(x) is not int:
        raise Unsupported("not a double")
    return _DOUBLE(x)


def _boolean(b: bool) -> bytes:
    if type(b) is not bool:
        raise Unsupported("not a boolean")
    return b"\x01" if b else b"\x00"


_DOUBLE = struct.Struct("<d").pack
# Written by a call; strings, uuids and timestamps are written inline (see `_Generator.value`).
_LEAVES: dict[tuple[str, str | None], Callable[[Any], bytes]] = {
    ("long", None): _varint,
    ("int", None): _int,
    ("int", "date"): _date,
    ("double", None): _double,
    ("boolean", None): _boolean,
}


class _NoWriter(Exception):  # noqa: N818
    """The schema uses something this module does not generate."""


class _Generator:
    def __init__(self) -> None:
        self.names: dict[str, Any] = {}  # fullname -> schema node
        self.functions: dict[str, str] = {}  # fullname -> generated function name
        self.sources: list[str] = []
        self.env: dict[str, Any] = {
            "Unsupported": Unsupported,
            "_varint": _varint,
            "_LENGTHS": [_varint(n) for n in range(64)],
            "_EPOCH": _EPOCH,
            "UUID": UUID,
            "datetime": datetime,
            **{f"_leaf_{i}": f for i, f in enumerate(_LEAVES.values())},
        }
        self.leaf_names = {key: f"_leaf_{i}" for i, key in enumerate(_LEAVES)}
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def resolve(self, node: Any, namespace: str | None) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVES:
            name = node if "." in node or namespace is None else f"{namespace}.{node}"
            if name not in self.names:
                name = node
            if name not in self.names:
                raise _NoWriter(f"unknown named type {node}")
            return self.names[name]
        return node

    def fullname(self, node: Mapping[str, Any], namespace: str | None) -> str:
        name: str = node["name"]
        if "." in name:
            return name
        space = node.get("namespace", namespace)
        return f"{space}.{name}" if space else name

    def value(  # noqa: PLR0911 - one return per kind of schema node
        self, node: Any, namespace: str | None, expr: str, indent: str
    ) -> list[str]:
        """Statements writing the value of `expr` (a local name) to `out`."""
        node = self.resolve(node, namespace)
        if isinstance(node, str):
            node = {"type": node}
        if isinstance(node, list):
            return self.union(node, namespace, expr, indent)
        kind = node["type"]
        if not isinstance(kind, str) or kind not in (*_PRIMITIVES, "record", "enum", "array"):
            return self.value(kind, namespace, expr, indent)  # {"type": <a type or a name>}
        if kind == "record":
            function = self.record(node, namespace)
            return [f"{indent}{function}({expr}, out)"]
        if kind == "enum":
            full = self.fullname(node, namespace)
            self.names[full] = node
            table = self.fresh("_symbols")
            self.env[table] = {s: _varint(i) for i, s in enumerate(node["symbols"])}
            self.env[table + "_list"] = list(node["symbols"])
            index = self.fresh("i")
            return [
                f"{indent}{index} = {table}.get({expr})",
                f"{indent}if {index} is None:  # an enum member whose name is not its value",
                f"{indent}    {index} = _varint({table}_list.index({expr}))",
                f"{indent}out += {index}",
            ]
        if kind == "array":
            item = self.fresh("item")
            count = self.fresh("n")
            body = self.value(node["items"], namespace, item, indent + "        ")
            return [
                f"{indent}if type({expr}) is not list and type({expr}) is not tuple:",
                f"{indent}    raise Unsupported('not an array')",
                f"{indent}{count} = len({expr})",
                f"{indent}if {count}:",
                f"{indent}    out += _varint({count})",
                f"{indent}    for {item} in {expr}:",
                *body,
                f"{indent}out += b'\\x00'",
            ]
        if kind == "null":
            return [f"{indent}if {expr} is not None:", f"{indent}    raise Unsupported('not null')"]
        logical = node.get("logicalType")
        if (kind, logical) not in _INLINE and (kind, logical) not in _LEAVES:
            # Another logical type, or a primitive type this module does not write.
            raise _NoWriter(f"{kind} with logical type {logical}")
        if kind == "string" and logical is None:
            return self.text(expr, indent)
        if kind == "string":  # uuid
            return [
                f"{indent}if type({expr}) is UUID:",
                f"{indent}    {expr} = str({expr})",
                *self.text(expr, indent),
            ]
        if kind == "long" and logical == "timestamp-millis":
            delta = self.fresh("d")
            return [
                f"{indent}if type({expr}) is not int:",
                f"{indent}    if not isinstance({expr}, datetime) or {expr}.tzinfo is None:",
                f"{indent}        raise Unsupported('not an aware datetime')",
                f"{indent}    {delta} = {expr} - _EPOCH",
                f"{indent}    {expr} = ({delta}.days * 86400 + {delta}.seconds) * 1000"
                f" + {delta}.microseconds // 1000",
                f"{indent}out += _varint({expr})",
            ]
        leaf = self.leaf_names[(kind, logical)]
        return [f"{indent}out += {leaf}({expr})"]

    def text(self, expr: str, indent: str) -> list[str]:
        data, size = self.fresh("b"), self.fresh("n")
        return [
            f"{indent}if type({expr}) is not str and not isinstance({expr}, str):",
            f"{indent}    raise Unsupported('not a string')",
            f"{indent}{data} = {expr}.encode()",
            f"{indent}{size} = len({data})",
            f"{indent}out += _LENGTHS[{size}] if {size} < 64 else _varint({size})",
            f"{indent}out += {data}",
        ]

    def union(
        self, branches: list[Any], namespace: str | None, expr: str, indent: str
    ) -> list[str]:
        if len(branches) != 2 or branches[0] != "null" or branches[1] == "null":
            raise _NoWriter("only ['null', T] unions are generated")
        other = self.resolve(branches[1], namespace)
        if isinstance(other, list):
            raise _NoWriter("a union inside a union")
        guard = []
        if isinstance(other, dict) and other.get("type") == "record":
            # fastavro also takes (name, value) and {"-type": name, ...} for named branches.
            guard = [
                f"{indent}    if type({expr}) is tuple or '-type' in {expr}:",
                f"{indent}        raise Unsupported('a named union branch')",
            ]
        return [
            f"{indent}if {expr} is None:",
            f"{indent}    out += b'\\x00'",
            f"{indent}else:",
            *guard,
            f"{indent}    out += b'\\x02'",
            *self.value(other, namespace, expr, indent + "    "),
        ]

    def record(self, node: Mapping[str, Any], namespace: str | None) -> str:
        full = self.fullname(node, namespace)
        if full in self.functions:
            return self.functions[full]
        self.names[full] = node
        function = self.fresh("_record")
        self.functions[full] = function
        inner = full.rpartition(".")[0] or None
        lines = [f"def {function}(record, out):"]
        lines.append("    if type(record) is not dict and not isinstance(record, Mapping):")
        lines.append("        raise Unsupported('not a mapping')")
        for field in node["fields"]:
            local = self.fresh("v")
            lines.append(f"    {local} = record[{field['name']!r}]")
            lines.extend(self.value(field["type"], inner, local, "    "))
        if len(lines) == 3:
            lines.append("    pass")
        self.sources.append("\n".join(lines))
        return function


def compile_writer(schema: Mapping[str, Any]) -> Writer | None:
    """A writer of records of this (self-contained, unparsed) schema, or None if it uses a type
    this module does not generate. The writer appends the Avro body of a record to `out`."""
    generator = _Generator()
    generator.env["Mapping"] = Mapping
    try:
        if schema.get("type") != "record":
            return None
        top = generator.record(schema, None)
    except _NoWriter:
        return None
    namespace: dict[str, Any] = dict(generator.env)
    exec("\n\n".join(generator.sources), namespace)  # our own generated source
    writer: Writer = namespace[top]
    return writer
