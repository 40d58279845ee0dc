"""Produce requests as data: the wire schema, and turning it into records ready for Kafka.

A batch is validated whole — every key, value, header, timestamp and size — before the first record
is handed to the producer, so a rejected batch leaves nothing behind in Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from msgspec import UNSET, Raw, UnsetType

from gateway import codec, errors


class RecordIn(msgspec.Struct, forbid_unknown_fields=True):
    """One record as a client writes it (API.md §1)."""

    value: Raw | UnsetType = UNSET
    key: Raw | UnsetType = UNSET
    headers: dict[str, str] | None = None
    partition: int | None = None
    timestamp: int | str | None = None


class ProduceBody(RecordIn, forbid_unknown_fields=True):
    """Either one record, or ``{"records": [...]}``."""

    records: list[RecordIn] | UnsetType = UNSET


_decode_body = msgspec.json.Decoder(ProduceBody).decode
_decode_record = msgspec.json.Decoder(RecordIn).decode


@dataclass(slots=True)
class OutRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    partition: int | None
    timestamp: int | None
    size: int


@dataclass(frozen=True, slots=True)
class Formats:
    key: codec.Format = "string"
    value: codec.Format = "json"


def _schema_error(exc: msgspec.ValidationError) -> errors.InvalidRecord:
    # msgspec says where: "... - at `$.records[3].value`"; turn that into our own path.
    text = str(exc).replace("`$.", "`").replace("`$`", "the body")
    return errors.InvalidRecord(f"Invalid record: {text}.")


def parse_body(body: bytes) -> tuple[list[RecordIn], bool]:
    """Decode a produce body; returns the records and whether it was a batch."""
    try:
        parsed = _decode_body(body)
    except msgspec.ValidationError as exc:
        raise _schema_error(exc) from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"Malformed JSON: {exc}.") from None
    if parsed.records is UNSET:
        return [parsed], False
    if any(getattr(parsed, f) not in (UNSET, None) for f in RecordIn.__struct_fields__):
        raise errors.InvalidRecord("A batch body has only 'records'; put record fields inside its items.")
    return list(parsed.records), True


def parse_line(line: bytes, where: str) -> RecordIn:
    """Decode one NDJSON line as one record; errors name ``where``."""
    try:
        return _decode_record(line)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRecord(f"{where}: {_schema_error(exc).message}") from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"{where}: Malformed JSON: {exc}.") from None


def prepare(
    rec: RecordIn,
    formats: Formats,
    max_record_bytes: int,
    extra_headers: list[tuple[str, bytes]] | None = None,
    where: str = "record",
) -> OutRecord:
    """Validate one record and encode it to Kafka bytes; errors name ``where``."""
    try:
        if rec.value is UNSET:
            raise errors.InvalidRecord("'value' is required (use null for a tombstone).")
        value = codec.encode(rec.value, formats.value, "value")
        key = None if rec.key is UNSET else codec.encode(rec.key, formats.key, "key")
        headers: list[tuple[str, bytes]] | None = None
        size = (len(value) if value else 0) + (len(key) if key else 0)
        if rec.headers:
            headers = [(name, text.encode()) for name, text in rec.headers.items()]
            size += sum(len(n) + len(v) for n, v in headers)
        if extra_headers:
            headers = (headers or []) + extra_headers
        if rec.partition is not None and rec.partition < 0:
            raise errors.InvalidRecord("'partition' must be 0 or more.")
        timestamp = None if rec.timestamp is None else codec.parse_timestamp(rec.timestamp)
    except errors.GatewayError as exc:
        exc.message = f"{where}: {exc.message}"
        raise
    if size > max_record_bytes:
        raise errors.PayloadTooLarge(f"{where}: {size} bytes is over the limit of {max_record_bytes} bytes per record.")
    return OutRecord(key, value, headers, rec.partition, timestamp, size)
