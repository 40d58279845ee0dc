"""Pure functions from Kafka records to server-sent event frames (API.md §2.1).

Frames are built as bytes once per record, so a fan-out can write the same bytes to every
subscriber, and many frames go out in one socket write. Every field is one line: JSON is compacted
by the codec and the cursor is base64, so no record content can break the framing.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec

from gateway import codec

_enc = msgspec.json.encode


def prelude(retry_ms: int) -> bytes:
    """First bytes of every stream: the reconnect delay and a comment, so proxies flush at once."""
    return b"retry: %d\n: connected\n\n" % retry_ms


def goodbye(retry_ms: int) -> bytes:
    """Last bytes on shutdown: clients reconnect (elsewhere) after ``retry_ms``."""
    return b"retry: %d\n: gateway shutting down, reconnect\n\n" % retry_ms


def error_event(message: str) -> bytes:
    return b"event: error\ndata: " + _enc({"message": message}) + b"\n\n"


def _field(name: bytes, data: bytes | None, fmt: codec.Format) -> bytes:
    try:
        return b'"' + name + b'":' + codec.decode(data, fmt)
    except codec.DecodeFailure as exc:
        assert data is not None
        # The value's problem is "decode_error" (API.md §2.1); a key's is "key_decode_error".
        err_name = b"decode_error" if name == b"value" else name + b"_decode_error"
        return (
            b'"' + name + b'_b64":' + _enc(base64.b64encode(data).decode("ascii"))
            + b',"' + err_name + b'":' + _enc(f"{name.decode()} {exc}")
        )  # fmt: skip


_RECORD = b'{"topic":%b,"partition":%d,"offset":%d,"timestamp":%d,"key":%b,"value":%b,"headers":%b}'
_RECORD_FIELDS = b'{"topic":%b,"partition":%d,"offset":%d,"timestamp":%d,%b,%b,"headers":%b}'


def record_data(
    topic_json: bytes,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]] | None,
    key_format: codec.Format,
    value_format: codec.Format,
) -> bytes:
    """The JSON ``data`` of one record event, on one line."""
    hdrs = headers_json(headers) if headers else b"{}"
    try:
        # The common case in one formatting step: both fields decode in their format.
        return _RECORD % (
            topic_json,
            partition,
            offset,
            timestamp,
            codec.decode(key, key_format),
            codec.decode(value, value_format),
            hdrs,
        )
    except codec.DecodeFailure:
        pass
    return _RECORD_FIELDS % (
        topic_json,
        partition,
        offset,
        timestamp,
        _field(b"key", key, key_format),
        _field(b"value", value, value_format),
        hdrs,
    )


def headers_json(headers: list[tuple[str, bytes | None]]) -> bytes:
    """Record headers as one JSON object of UTF-8 text (a repeated name keeps its last value)."""
    return _enc({name: (v.decode("utf-8", "replace") if v is not None else None) for name, v in headers})


def frame(cursor: str | bytes, data: bytes, tombstone: bool) -> bytes:
    token = cursor if isinstance(cursor, bytes) else cursor.encode("ascii")
    kind = b"\nevent: tombstone\ndata: " if tombstone else b"\nevent: record\ndata: "
    return b"id: " + token + kind + data + b"\n\n"


def heartbeat() -> bytes:
    """A comment that keeps idle connections open through proxies; the same text sse-starlette's
    own ping sends (``: ping - <UTC time>``), built once per round for every subscriber."""
    return b": ping - %s\n\n" % str(datetime.now(UTC)).encode("ascii")
