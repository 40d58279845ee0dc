"""Produce requests as data: the wire schema, and turning it into records ready for Kafka.

The JSON decoder is chosen by the request's formats (API.md §1), so msgspec itself, in C, checks that
a ``string`` key is a JSON string, decodes a ``binary`` value's base64 and keeps a ``json`` value as
its raw bytes (``msgspec.Raw``: compacted once, never decoded into Python objects and encoded again).
Its errors carry the record's index (``records[3].key``); they are reworded here for curl users.

A batch is validated whole — every key, value, header, timestamp and size — before the first record
is handed to the producer, so a rejected batch leaves nothing behind in Kafka. That per-record loop,
``prepare``, is compiled (``gateway/_records.pyx``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

from gateway import codec, errors
from gateway._records import JSON_NULL as NULL
from gateway._records import MAX_TIMESTAMP_MS, prepare, timestamp_ms
from gateway.kafka.delivery import Prepared

__all__ = [
    "MAX_TIMESTAMP_MS",
    "NULL",
    "PLACEHOLDER",
    "Formats",
    "Prepared",
    "ProduceBody",
    "Record",
    "parse_body",
    "parse_line",
    "prepare",
    "timestamp_ms",
]

# Stands in for a record that failed validation inside an NDJSON group; never produced.
PLACEHOLDER: Prepared = (None, None, None, -1, 0, 0)

AnyJson = Annotated[Raw, Meta(description="Any JSON; how it is written depends on key_format / value_format")]
Headers = Annotated[dict[str, str], Meta(description="Header name -> text (written as UTF-8)")]
Timestamp = Annotated[
    int | str,
    Meta(description="Epoch milliseconds, or RFC 3339 text with a zone (`2024-05-01T12:00:00.250Z`)"),
]
Partition = Annotated[int, Meta(ge=0, description="Explicit partition; default: murmur2 of the key, as Java")]


class Record(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One record as a client writes it (API.md §1). Documentation type: the decoders are built per format."""

    key: AnyJson | None = None
    value: AnyJson
    headers: Headers | None = None
    partition: Partition | None = None
    timestamp: Timestamp | None = None


class ProduceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Either one record (its fields at the top level), or ``{"records": [...]}``."""

    records: list[Record] | UnsetType = UNSET
    key: AnyJson | None = None
    value: AnyJson | UnsetType = UNSET
    headers: Headers | None = None
    partition: Partition | None = None
    timestamp: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class Formats:
    key: codec.Format = "string"
    value: codec.Format = "json"


# How each format arrives from msgspec: json as raw text, string as str, binary as base64-decoded bytes.
_TYPES: dict[str, Any] = {"json": Raw, "string": str | None, "binary": bytes | None}
_SINGLE_FIELDS = ("key", "value", "headers", "partition", "timestamp")


@functools.cache
def _decoders(formats: Formats) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """(body decoder, one-record decoder) for these formats."""
    k, v = _TYPES[formats.key], _TYPES[formats.value]
    common: list[Any] = [
        ("headers", dict[str, str] | None, None),
        ("partition", Annotated[int, Meta(ge=0)] | None, None),
        ("timestamp", int | str | None, None),
    ]
    # msgspec cannot put Raw in a union, so an absent json key defaults to the raw text null.
    key_field = ("key", k, NULL if k is Raw else None)
    # gc=False: decoded JSON holds no reference cycles, so the collector need not track a struct per record.
    record = msgspec.defstruct(
        "Record", [("value", v), key_field, *common], forbid_unknown_fields=True, kw_only=True, gc=False
    )
    body = msgspec.defstruct(
        "Body",
        [("records", list[record] | UnsetType, UNSET), ("value", v | UnsetType, UNSET), key_field, *common],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )
    return msgspec.json.Decoder(body), msgspec.json.Decoder(record)


_PATH = re.compile(r" - at `\$(\.?)([^`]*)`$")


def _schema_error(exc: msgspec.ValidationError, formats: Formats, where: str | None = None) -> errors.InvalidRecord:
    """msgspec's "Expected `str | null`, got `int` - at `$.records[3].key`" in the API's words."""
    text = str(exc)
    m = _PATH.search(text)
    path = m.group(2) if m else ""
    what = text[: m.start()] if m else text
    if where:
        path = f"{where}: {path}" if path else where
    field = path.rsplit(".", 1)[-1]
    if field in ("key", "value"):
        fmt = formats.key if field == "key" else formats.value
        if what.startswith("Invalid base64"):
            what = f"must be base64 text with {field}_format=binary"
        elif what.startswith("Expected"):
            got = what.rsplit("got ", 1)[-1].strip("`")
            what = f"must be a JSON string or null with {field}_format={fmt}, got {got}"
        what = f"{path} {what}"
    elif what.startswith("Object missing required field `value`"):
        what = f"{path or 'the record'}: 'value' is required (null writes a tombstone)"
    elif what.startswith("Object contains unknown field"):
        what = f"{path or 'the record'} has an unknown field{what[len('Object contains unknown field') :]}"
    elif path:
        what = f"{path}: {what}"
    return errors.InvalidRecord(f"Invalid record: {what}.")


def parse_body(body: bytes, formats: Formats) -> tuple[list[Any], bool]:
    """Decode a produce body; returns the records and whether it was a batch."""
    try:
        parsed = _decoders(formats)[0].decode(body)
    except msgspec.ValidationError as exc:
        raise _schema_error(exc, formats) from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"Malformed JSON: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise codec.not_utf8(exc) from None
    if parsed.records is UNSET:
        if parsed.value is UNSET:
            raise errors.InvalidRecord(
                "Invalid record: 'value' is required (null writes a tombstone), or send {\"records\": [...]}."
            )
        return [parsed], False
    if any(getattr(parsed, f) not in (UNSET, None, NULL) for f in _SINGLE_FIELDS):
        raise errors.InvalidRecord("Invalid body: a batch has only 'records'; put record fields inside its items.")
    if not parsed.records:
        raise errors.InvalidRecord("Invalid body: 'records' must not be empty.")
    return parsed.records, True


def parse_line(line: bytes, formats: Formats, where: str) -> Any:
    """Decode one NDJSON line as one record; errors name ``where``."""
    try:
        return _decoders(formats)[1].decode(line)
    except msgspec.ValidationError as exc:
        raise _schema_error(exc, formats, where) from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"{where}: Malformed JSON: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(f"{where}: {codec.not_utf8(exc).message}") from None


def decode_request(body: bytes, kind: type[Any]) -> Any:
    """A control request body (consumer instances, topic creation, ...) as ``kind``: 400 or 422 otherwise."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRecord(f"Invalid request: {str(exc).replace('`$.', '`')}.") from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"Malformed JSON: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise codec.not_utf8(exc) from None
