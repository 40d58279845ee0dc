"""The creation body of a Confluent v2 consumer instance (``POST /consumers/{group}``), validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway import errors
from gateway.settings import ConfluentSettings

Format = Literal["binary", "json"]
FORMATS: tuple[Format, ...] = ("binary", "json")
# Embedded formats of the Confluent proxy that need a schema registry; named in the error message.
SCHEMA_FORMATS = ("avro", "jsonschema", "protobuf")
OFFSET_RESETS = ("earliest", "latest", "none")


@dataclass(frozen=True)
class InstanceConfig:
    """What ``POST /consumers/{group}`` asked for, validated."""

    name: str | None
    format: Format
    auto_offset_reset: str | None
    auto_commit: bool
    # -1: answer as soon as records are held; otherwise wait until more than this many bytes.
    fetch_min_bytes: int
    request_timeout_ms: int


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.InvalidConsumerConfig(f"Invalid consumer configuration: '{what}' must be a string.")
    return str(value).strip()


def _int(value: Any, what: str) -> int | None:
    text = _text(value, what)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: '{what}' must be an integer; got '{text}'."
        ) from None


def parse_config(body: dict[str, Any], settings: ConfluentSettings) -> InstanceConfig:
    """The creation body (``name``, ``format``, ``auto.offset.reset``, ...) -> an ``InstanceConfig``."""
    known = {"name", "id", "format", "auto.offset.reset", "auto.commit.enable", "fetch.min.bytes"}
    known.add("consumer.request.timeout.ms")
    unknown = sorted(set(body) - known)
    if unknown:
        raise errors.InvalidConsumerConfig(f"Invalid consumer configuration: unknown field(s) {', '.join(unknown)}.")
    # The deprecated 'id' wins over 'name', as in the Confluent proxy.
    name = _text(body.get("id"), "id") or _text(body.get("name"), "name") or None
    if name is not None and (len(name) > 255 or "/" in name):
        raise errors.InvalidConsumerConfig(
            "Invalid consumer configuration: 'name' must be 1 to 255 characters, no '/'."
        )
    fmt = (_text(body.get("format"), "format") or "binary").lower()
    if fmt in SCHEMA_FORMATS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: format '{fmt}' needs a schema registry, which this gateway "
            "does not support; use 'binary' or 'json'."
        )
    if fmt not in FORMATS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: format must be binary or json; got '{fmt}'."
        )
    reset = _text(body.get("auto.offset.reset"), "auto.offset.reset")
    reset = {"smallest": "earliest", "largest": "latest"}.get(reset or "", reset)
    if reset is not None and reset not in OFFSET_RESETS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: auto.offset.reset must be earliest, latest or none; got '{reset}'."
        )
    commit = (_text(body.get("auto.commit.enable"), "auto.commit.enable") or "false").lower()
    if commit not in ("true", "false"):
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: auto.commit.enable must be true or false; got '{commit}'."
        )
    min_bytes = _int(body.get("fetch.min.bytes"), "fetch.min.bytes")
    timeout_ms = _int(body.get("consumer.request.timeout.ms"), "consumer.request.timeout.ms")
    if timeout_ms is not None and timeout_ms <= 0:
        raise errors.InvalidConsumerConfig("Invalid consumer configuration: consumer.request.timeout.ms must be > 0.")
    return InstanceConfig(
        name=name,
        format="json" if fmt == "json" else "binary",
        auto_offset_reset=reset,
        auto_commit=commit == "true",
        fetch_min_bytes=-1 if min_bytes is None or min_bytes < 0 else min_bytes,
        request_timeout_ms=min(timeout_ms or settings.request_timeout_ms, settings.max_request_timeout_ms),
    )
