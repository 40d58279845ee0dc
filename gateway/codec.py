"""Pure functions between JSON as clients write it and bytes as Kafka stores them (API.md §1, §2.1).

Formats: ``json`` (compact UTF-8 JSON), ``string`` (a JSON string written as its UTF-8 text) and
``binary`` (a base64 string written decoded). Incoming JSON values are kept as ``msgspec.Raw`` so a
``json`` value is compacted straight from the request bytes, never decoded into Python objects and
encoded again.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from gateway import errors

Format = Literal["json", "string", "binary"]
FORMATS: tuple[Format, ...] = ("json", "string", "binary")
NULL = b"null"

_decode_str = msgspec.json.Decoder(str).decode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_format(value: str | None, default: Format, name: str) -> Format:
    if value is None:
        return default
    if value not in FORMATS:
        raise errors.BadRequest(f"Query parameter '{name}' must be one of json, string, binary; got '{value}'.")
    return value


def not_utf8(exc: UnicodeDecodeError) -> errors.BadRequest:
    """JSON is UTF-8 (RFC 8259): text that is not is malformed, wherever the bad bytes are."""
    return errors.BadRequest(f"Malformed JSON: not valid UTF-8 ({exc.reason} at byte {exc.start} of a string).")


def check_utf8(text: bytes) -> None:
    """BadRequest unless ``text`` is UTF-8 (msgspec checks the structure of JSON, not its strings' bytes)."""
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None


def json_bytes(raw: msgspec.Raw | bytes) -> bytes:
    """Valid JSON text (msgspec checked its structure) -> the compact UTF-8 bytes Kafka gets.

    Most clients send compact JSON: text without a whitespace byte (``split()`` looks in C) is written
    as it came, since ``format`` only ever removes whitespace; skipping it saves a third of
    ``records.prepare``'s instructions (python -m bench.probes produce-cost).
    """
    text = bytes(raw)
    words = text.split()
    if len(words) != 1 or len(words[0]) != len(text):
        text = msgspec.json.format(text, indent=-1)
    if not text.isascii():
        check_utf8(text)
    return text


def encode(raw: msgspec.Raw | bytes, fmt: Format, what: str) -> bytes | None:
    """JSON text of a key or value -> the bytes written to Kafka (None for JSON null)."""
    text = bytes(raw)
    if text == NULL:
        return None
    try:
        if fmt == "json":
            return json_bytes(text)
        s = _decode_str(text)
    except msgspec.ValidationError:
        raise errors.InvalidRecord(f"{what} must be a JSON string in '{fmt}' format.") from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"Malformed JSON in {what}: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None
    if fmt == "string":
        return s.encode()
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRecord(f"{what} is not valid base64 in 'binary' format.") from None


class DecodeFailure(Exception):
    """Bytes that do not decode in the requested format (reported per record, never fatal)."""


# Checks that bytes are one JSON text (without building it) and raises msgspec.DecodeError if not.
# (Its own UTF-8 is not checked: ``decode`` does that for non-ASCII text.)
validate_json = msgspec.json.Decoder(msgspec.Raw).decode
# JSON allows line breaks only between tokens, never raw inside a string: as spaces, the text is one line.
ONE_LINE = bytes.maketrans(b"\r\n", b"  ")


def decode(data: bytes | None, fmt: Format) -> bytes:
    """Bytes from Kafka -> one-line JSON text of the key or value in ``fmt``: ``json`` as stored (checked
    to be JSON in UTF-8; line breaks between tokens become spaces), ``string`` and ``binary`` as JSON strings."""
    if data is None:
        return NULL
    if fmt == "json":
        try:
            validate_json(data)
            if not data.isascii():
                data.decode("utf-8")
        except msgspec.DecodeError as exc:
            raise DecodeFailure(f"not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DecodeFailure(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
        return data.translate(ONE_LINE)
    if fmt == "string":
        try:
            return msgspec.json.encode(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DecodeFailure(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    return msgspec.json.encode(base64.b64encode(data).decode("ascii"))


def parse_timestamp(value: int | str, what: str = "timestamp") -> int:
    """Epoch milliseconds or RFC 3339 text -> epoch milliseconds."""
    if isinstance(value, int):
        if value < 0:
            raise errors.InvalidRecord(f"{what} must not be negative.")
        return value
    # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidRecord(f"{what} must be epoch milliseconds or RFC 3339; got '{value}'.") from None
    if dt.tzinfo is None:
        raise errors.InvalidRecord(f"{what} in RFC 3339 needs a time zone offset (e.g. 'Z'); got '{value}'.")
    # Integer arithmetic: dt.timestamp() * 1000 is a float and can land 1 ms short (.123 -> 122).
    return (dt - _EPOCH) // _MS
