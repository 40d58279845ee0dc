"""Confluent v2 media types: content negotiation, and reading a request body within its limit."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

from gateway import errors

V2 = "application/vnd.kafka.v2+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"
V2_JSON = "application/vnd.kafka.json.v2+json"
EMBEDDED = ("binary", "json", "avro", "jsonschema", "protobuf")
# Types a v2 response without embedded data satisfies (besides the wildcards).
GENERIC_ACCEPTS = {"application/json", "application/vnd.kafka+json", V2} | {
    f"application/vnd.kafka.{f}.v2+json" for f in EMBEDDED
}
# Bodies of non-produce v2 requests: the Confluent proxy reads them whatever the embedded format.
_GENERIC_CONTENT = GENERIC_ACCEPTS | {"application/octet-stream", ""}

encode = msgspec.json.encode


def media_of(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepted(accept: str | None) -> list[str]:
    """Media ranges of an Accept header, without those the client refuses (q=0)."""
    if not accept:
        return ["*/*"]
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p.split("=", 1)[1] for p in params if p.replace(" ", "").startswith("q=")), "1")
        try:
            refused = float(q) <= 0
        except ValueError:
            refused = False
        if media and not refused:
            out.append(media.lower())
    return out


def negotiate(accept: str | None, offered: set[str], preferred: str) -> str:
    """The response media type for this Accept header, or 406 40601."""
    ranges = _accepted(accept)
    if any(r in ("*/*", "application/*") for r in ranges):
        return preferred
    for r in ranges:
        if r in offered:
            return preferred if r != "application/json" else "application/json"
    raise errors.NotAcceptable(f"None of the accepted types ({accept}) can be produced; use {preferred}.")


def negotiate_generic(request: Request) -> str:
    """The media type of a response without embedded data, or 406 40601."""
    return negotiate(request.headers.get("accept"), GENERIC_ACCEPTS, V2)


def v2_response(request: Request, content: Any, status: int = 200) -> Response:
    media = negotiate_generic(request)
    return Response(encode(content), status, media_type=media)


def no_content(request: Request) -> Response:
    negotiate_generic(request)
    return Response(status_code=204)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 41301: early from Content-Length, else once it is read."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise errors.PayloadTooLarge(f"Body of {length} bytes is over the limit of {limit} bytes.")
    body = await request.body()
    if len(body) > limit:
        raise errors.PayloadTooLarge(f"Body is over the limit of {limit} bytes.")
    return body


async def control_body(request: Request, limit: int) -> bytes:
    """The body of a request without embedded data (consumer control), media type checked first."""
    media = media_of(request.headers.get("content-type"))
    if media not in _GENERIC_CONTENT:
        raise errors.UnsupportedMediaType(f"Content-Type must be {V2} (or application/json); got '{media}'.")
    return await read_body(request, limit)
