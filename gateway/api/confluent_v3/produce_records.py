"""Confluent v3 produce requests -> Kafka records: the record body, its key/value data, and the
splitting of a body of concatenated JSON records (``{...}{...}``, any whitespace between).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from typing import Any, Literal

import msgspec

from gateway import codec, errors, records
from gateway.kafka.delivery import Prepared

DataType = Literal["BINARY", "JSON", "STRING"]


class DataIn(msgspec.Struct, forbid_unknown_fields=True):
    type: DataType | None = None
    # msgspec's Raw cannot sit in a union with None: a missing or null data is Raw(b"null").
    data: msgspec.Raw = records.NULL
    # Schema-registry fields of Confluent's request; refused below with a clear message.
    subject: str | None = None
    schema_id: int | None = None
    schema_version: int | None = None
    schema: str | None = None
    subject_name_strategy: str | None = None


class HeaderIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    value: str | None = None


class RecordV3(msgspec.Struct, forbid_unknown_fields=True):
    partition_id: int | None = None
    headers: list[HeaderIn] = msgspec.field(default_factory=list)
    key: DataIn | None = None
    value: DataIn | None = None
    timestamp: str | int | None = None


_decode_record = msgspec.json.Decoder(RecordV3).decode


def _data(d: DataIn | None, what: str) -> tuple[bytes | None, str | None]:
    """A v3 key or value -> Kafka bytes and the type to report (None when absent)."""
    if d is None:
        return None, None
    if d.schema is not None or d.schema_id is not None or d.subject is not None or d.schema_version is not None:
        raise errors.InvalidRecord(f"{what}: schemas need a schema registry, which this gateway does not support.")
    kind = d.type or "JSON"
    raw = bytes(d.data)
    if raw == b"null":
        return None, kind
    if kind == "JSON":
        return codec.encode(raw, "json", what), kind
    try:
        text = msgspec.json.decode(raw, type=str)
    except msgspec.ValidationError:
        raise errors.InvalidRecord(f"{what}: data of type {kind} must be a JSON string.") from None
    if kind == "STRING":
        return text.encode(), kind
    try:
        return base64.b64decode(text, validate=True), kind
    except (binascii.Error, ValueError):
        raise errors.InvalidRecord(f"{what}: data of type BINARY is not valid base64.") from None


def prepare(rec: RecordV3, max_record_bytes: int, where: str) -> tuple[Prepared, dict[str, Any]]:
    """Validate one v3 record; returns it for Kafka and the key/value part of its report."""
    try:
        key, key_type = _data(rec.key, "key")
        value, value_type = _data(rec.value, "value")
        headers: list[tuple[str, bytes]] | None = None
        if rec.headers:
            headers = []
            for h in rec.headers:
                try:
                    headers.append((h.name, base64.b64decode(h.value or "", validate=True)))
                except (binascii.Error, ValueError):
                    raise errors.InvalidRecord(f"header '{h.name}': value is not valid base64.") from None
        if rec.partition_id is not None and rec.partition_id < 0:
            raise errors.InvalidRecord("'partition_id' must be 0 or more.")
        ts = 0 if rec.timestamp is None else records.timestamp_ms(rec.timestamp)
        if rec.timestamp is not None and not 0 < ts <= records.MAX_TIMESTAMP_MS:
            raise errors.InvalidRecord(f"timestamp must be from epoch ms 1 to {records.MAX_TIMESTAMP_MS}.")
    except errors.GatewayError as exc:
        exc.message = f"{where}: {exc.message}"
        raise
    size = (len(key) if key else 0) + (len(value) if value else 0) + sum(len(n) + len(v) for n, v in headers or [])
    if size > max_record_bytes:
        raise errors.PayloadTooLarge(f"{where}: {size} bytes is over the limit of {max_record_bytes} bytes per record.")
    report: dict[str, Any] = {}
    if key_type is not None:
        report["key"] = {"type": key_type, "size": len(key or b"")}
    if value_type is not None:
        report["value"] = {"type": value_type, "size": len(value or b"")}
    partition = -1 if rec.partition_id is None else rec.partition_id
    return (value, key, headers, partition, ts, size), report


def decode_one(text: str, where: str) -> RecordV3:
    try:
        return _decode_record(text)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRecord(f"{where}: Invalid record: {str(exc).replace('`$.', '`')}.") from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"{where}: Malformed JSON: {exc}.") from None


class ConcatenatedJson:
    """Splits a byte stream of concatenated JSON values (``{..}{..}`` or one per line) into values.

    ``json.JSONDecoder.raw_decode`` (C-accelerated) finds where each value ends; an incomplete value
    at the end of the buffer waits for more bytes. Bytes that cannot start a value are reported once
    the stream ends or the buffer grows past ``max_value`` (a concatenated stream has no way to
    resynchronise after a malformed value, so the stream ends there).
    """

    def __init__(self, max_value: int) -> None:
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._max = max_value

    def feed(self, chunk: bytes, final: bool = False) -> tuple[list[str], errors.GatewayError | None]:
        """Complete values so far, and the error that ends the stream (if any)."""
        try:
            self._buf += self._utf8.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self._buf = ""
            return [], errors.BadRequest(f"{codec.not_utf8(exc).message[:-1]}; the stream ends here.")
        out: list[str] = []
        pos = 0
        buf = self._buf
        n = len(buf)
        while True:
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                _, end = self._decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if final or n - pos > self._max:
                    self._buf = ""
                    return out, errors.BadRequest(f"Malformed JSON: {exc.msg}; the stream ends here.")
                break
            out.append(buf[pos:end])
            pos = end
        self._buf = buf[pos:]
        return out, None
