"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from events.avro_writer import Writer, compile_writer
from events.catalog import Catalog, SchemaVersion
from events.topics import MAX_EVENT_BYTES

if TYPE_CHECKING:
    from events.envelope import Event

MAGIC = 0
HEADER = struct.Struct(">BI")
DEFAULT_MAX_MESSAGE_BYTES = MAX_EVENT_BYTES

# What fastavro's reader raises on malformed input; anything else is a bug and propagates.
_READ_ERRORS = (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error)
_WRITE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


class DecodeError(ValueError):
    """Bytes that are not a valid framed record of a known schema; the message says why."""


class InvalidEventError(DecodeError):
    """A well-framed record that is no valid event: an unknown type, or values the model refuses."""


class EncodeError(ValueError):
    """A record that does not fit its schema, or a subject or id the catalog does not know."""


class TooLargeError(EncodeError):
    """A record whose framed encoding exceeds the codec's `max_message_bytes`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds {limit}")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded message: which schema wrote it, and the record."""

    schema_id: int
    subject: str
    version: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Writer:
    version: SchemaVersion
    parsed: Any
    raw: Any  # the same schema without logical types: values stay as written
    header: bytes
    # For events: uuids stay strings, which pydantic parses (in Rust) far faster than
    # fastavro's uuid.UUID(); the other logical types are read as before.
    textual_uuids: Any
    # Generated from the schema: fastavro's bytes, faster; None where it cannot be generated.
    fast: Writer | None


def _without_logical_types(node: Any) -> Any:
    """A copy of a schema with every logicalType removed (the binary encoding is the same)."""
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node


def _without_uuid_type(node: Any) -> Any:
    """A copy of a schema whose uuid logical types are plain strings (the same encoding)."""
    if isinstance(node, list):
        return [_without_uuid_type(item) for item in node]
    if isinstance(node, dict):
        return {
            k: _without_uuid_type(v)
            for k, v in node.items()
            if not (k == "logicalType" and v == "uuid")
        }
    return node


def _why(exc: BaseException) -> str:
    """A reader failure in the words of the wire format."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 in a string ({exc.reason})"
    if isinstance(exc, EOFError) or "string index" in text:
        return f"truncated body{': ' + text if text else ''}"
    if isinstance(exc, IndexError):
        return "bad enum index or invalid union branch"
    if isinstance(exc, OverflowError | ValueError):
        return f"value out of bounds: {text}"
    return f"malformed body: {type(exc).__name__}: {text}"


class Codec:
    """Encodes records to framed bytes with the latest schema of a subject, and decodes any id."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        strict: bool = True,
    ) -> None:
        self.catalog = catalog
        self.max_message_bytes = max_message_bytes
        # strict: accept only the canonical encoding of what was read, which catches what
        # fastavro lets through (negative enum or union index, boolean 5, over-long varints).
        self.strict = strict
        self._by_id = {
            v.id: _Writer(
                v,
                catalog.parsed(v.id),
                parse_schema(_without_logical_types(v.schema)),
                HEADER.pack(MAGIC, v.id),
                parse_schema(_without_uuid_type(v.schema)),
                compile_writer(v.schema),
            )
            for v in catalog.all()
        }
        self._latest: dict[str, _Writer] = {}
        for subject in catalog.subjects():
            writer = self._by_id[catalog.latest(subject).id]
            self._latest[subject] = writer
            self._latest[writer.version.event_type] = writer

    def encode(self, subject_or_event_type: str, record: Mapping[str, Any]) -> bytes:
        """Frame a record with the latest schema of a subject (or of an event type)."""
        writer = self._latest.get(subject_or_event_type)
        if writer is None:
            raise EncodeError(f"unknown subject or event type {subject_or_event_type!r}")
        return self._encode(writer, record)

    def encode_with_id(self, schema_id: int, record: Mapping[str, Any]) -> bytes:
        """Frame a record with one registered schema."""
        writer = self._by_id.get(schema_id)
        if writer is None:
            raise EncodeError(f"unknown schema id {schema_id}")
        return self._encode(writer, record)

    def _encode(self, writer: _Writer, record: Mapping[str, Any]) -> bytes:
        if writer.fast is not None:
            body = bytearray(writer.header)
            try:
                writer.fast(record, body)
            except Exception:  # fastavro encodes it, or names the error
                pass
            else:
                if len(body) > self.max_message_bytes:
                    raise TooLargeError(len(body), self.max_message_bytes)
                return bytes(body)
        out = io.BytesIO()
        out.write(writer.header)
        try:
            schemaless_writer(out, writer.parsed, record, strict_allow_default=True)
        except _WRITE_ERRORS as exc:
            subject = writer.version.subject
            raise EncodeError(
                f"record does not fit {subject}: {type(exc).__name__}: {exc}"
            ) from None
        if out.tell() > self.max_message_bytes:
            raise TooLargeError(out.tell(), self.max_message_bytes)
        return out.getvalue()

    def decode(self, data: bytes) -> Decoded:
        """Read one framed message; any malformed input raises DecodeError."""
        writer = self._writer_of(data)
        record = self._read(writer, writer.parsed, data)
        version = writer.version
        return Decoded(writer.version.id, version.subject, version.version, record)

    def _writer_of(self, data: bytes) -> _Writer:
        size = len(data)
        if size > self.max_message_bytes:
            raise DecodeError(f"message of {size} bytes exceeds {self.max_message_bytes}")
        if size < HEADER.size:
            raise DecodeError(f"too short: {size} bytes, the header alone takes {HEADER.size}")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"wrong magic byte {magic}, expected {MAGIC}")
        writer = self._by_id.get(schema_id)
        if writer is None:
            raise DecodeError(f"unknown schema id {schema_id}")
        return writer

    def _read(self, writer: _Writer, parsed: Any, data: bytes) -> Any:
        schema_id = writer.version.id
        stream = io.BytesIO(data)
        stream.seek(HEADER.size)
        try:
            record: Any = schemaless_reader(stream, parsed, None)
        except _READ_ERRORS as exc:
            raise DecodeError(f"schema id {schema_id}: {_why(exc)}") from None
        if stream.tell() != len(data):
            raise DecodeError(f"schema id {schema_id}: {len(data) - stream.tell()} trailing bytes")
        if self.strict:
            self._check_canonical(writer, record, data)
        return record

    def _check_canonical(self, writer: _Writer, record: Any, data: bytes) -> None:
        if self._reencodes(writer.parsed, record, data):
            return
        # A uuid written without hyphens or a decimal with padding is legal but re-encodes
        # differently with logical types; the raw values must then match byte for byte.
        stream = io.BytesIO(data)
        stream.seek(HEADER.size)
        if self._reencodes(writer.raw, schemaless_reader(stream, writer.raw, None), data):
            return
        raise DecodeError(
            f"schema id {writer.version.id}: not the canonical encoding "
            "(negative enum or union index, boolean other than 0/1, over-long varint, "
            "or arrays in several blocks)"
        )

    @staticmethod
    def _reencodes(parsed: Any, record: Any, data: bytes) -> bool:
        """Whether writing record again gives back exactly the body of data."""
        out = io.BytesIO()
        out.write(data[: HEADER.size])
        try:
            schemaless_writer(out, parsed, record)
        except _WRITE_ERRORS:
            return False
        return out.getbuffer() == memoryview(data)

    def encode_event(self, event: Event) -> bytes:
        """Frame a pydantic event with the latest schema of its event type.

        fastavro writes the model's own dump: its enums are `StrEnum`s (equal to their symbols)
        and its tuples are sequences, so the bytes are those of `to_record(event)` without
        the copy that converts them (a fifth of the encoding's CPU; a test holds the equality)."""
        return self.encode(event.envelope.event_type, event.model_dump())

    def decode_event(self, data: bytes) -> Event:
        """Read a framed message back into its pydantic event; DecodeError is all it raises."""
        from pydantic import ValidationError

        from events.registry import UnknownEventType, from_record

        writer = self._writer_of(data)
        record = self._read(writer, writer.textual_uuids, data)
        try:
            return from_record(record)
        except (UnknownEventType, ValidationError) as exc:
            raise InvalidEventError(f"the record is no valid event: {exc}") from exc
