"""Native produce: ``POST /topics/{topic}/records`` (API.md §1).

The body is read and decoded here with msgspec rather than through a pydantic model: values stay raw
JSON bytes from the request to Kafka (see ``gateway.records``). The OpenAPI schema is generated from
the same msgspec types, so the documentation cannot drift from what is accepted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway import codec, errors, records
from gateway.api.deps import RuntimeDep
from gateway.api.errors import error_body, error_response, retry_headers, status_and_code
from gateway.lifespan import Runtime
from gateway.publish import Outcome, Pending, Publisher

router = APIRouter(tags=["produce"])

_encode = msgspec.json.encode
JSON = "application/json"
NDJSON = "application/x-ndjson"
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS = 255
_ABANDONED = _encode(
    {"error_code": 50301, "message": "The first request with this Idempotency-Key did not finish; retry."}
)


def _schema() -> dict[str, Any]:
    (body_schema,), components = msgspec.json.schema_components(
        [records.ProduceBody], ref_template="#/components/schemas/{name}"
    )
    return {"body": body_schema, "components": components}


_SCHEMAS = _schema()
_ERROR_EXAMPLE = {"error_code": 42201, "message": "Invalid record: ..."}
_ERR = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}, "example": _ERROR_EXAMPLE}}}

OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": _SCHEMAS["body"],
                "examples": {
                    "one": {"value": {"key": "user-1", "value": {"clicked": "buy"}, "headers": {"source": "web"}}},
                    "batch": {"value": {"records": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]}},
                },
            },
            NDJSON: {
                "schema": {"type": "string", "description": "One record object per line."},
                "example": '{"key":"a","value":1}\n{"key":"b","value":2}\n',
            },
        },
    },
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every record acknowledged by Kafka (acks=all). One record: its position; a batch: "
        "`results` in input order. NDJSON: one result line per input line.",
        "content": {
            JSON: {
                "examples": {
                    "one": {"value": {"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1700000000000}},
                    "batch": {"value": {"results": [{"partition": 0, "offset": 42, "timestamp": 1700000000000}]}},
                }
            },
            NDJSON: {"example": '{"partition":0,"offset":42,"timestamp":1700000000000}\n'},
        },
    },
    202: {
        "description": "Queued (`async=true` or `Prefer: respond-async`); no offsets.",
        "content": {JSON: {"example": {"queued": 2}}},
    },
    207: {
        "description": "Some records of the batch failed; each result is a position or an error.",
        "content": {
            JSON: {
                "example": {
                    "results": [
                        {"partition": 0, "offset": 7, "timestamp": 1},
                        {"error_code": 40402, "message": "Partition 9 of topic 'orders' not found."},
                    ]
                }
            }
        },
    },
    400: {"description": "Malformed JSON or bad query parameter", **_ERR},
    404: {"description": "Unknown topic (40401); for one record, unknown partition (40402)", **_ERR},
    413: {"description": "Body, record or batch over the limits", **_ERR},
    415: {"description": "Content-Type is not application/json or application/x-ndjson", **_ERR},
    422: {"description": "Well-formed JSON that breaks the record schema; names the record", **_ERR},
    429: {"description": "Producer queue full; see Retry-After", **_ERR},
    503: {"description": "Kafka unreachable or delivery timed out; see Retry-After", **_ERR},
}


class DuplexStreamingResponse(StreamingResponse):
    """A streamed response written while the request body is still being read.

    Starlette's ``StreamingResponse`` (under ASGI < 2.4, as uvicorn serves) watches for disconnects
    by calling ``receive()`` itself, which would steal the request body's chunks from the NDJSON
    reader. Here a disconnect shows up as a failed send instead.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.stream_response(send)
        except OSError:
            raise ClientDisconnect() from None


def _delivered_json(out: Outcome) -> dict[str, Any]:
    if isinstance(out, errors.GatewayError):
        return error_body(out)
    return {"partition": out.partition, "offset": out.offset, "timestamp": out.timestamp}


def _batch_status(outcomes: list[Outcome]) -> int:
    failed = [o for o in outcomes if isinstance(o, errors.GatewayError)]
    if not failed:
        return 200
    if len(failed) < len(outcomes):
        return 207
    causes = {status_and_code(e) for e in failed}
    return causes.pop()[0] if len(causes) == 1 else 207


def _formats(fmt: str | None, key_format: str | None, value_format: str | None) -> records.Formats:
    both = codec.parse_format(fmt, "json", "format") if fmt else None
    return records.Formats(
        key=codec.parse_format(key_format, both or "string", "key_format"),
        value=codec.parse_format(value_format, both or "json", "value_format"),
    )


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise errors.PayloadTooLarge(f"Body of {length} bytes is over the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"Body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (JSON, NDJSON):
        return media
    raise errors.UnsupportedMediaType(f"Content-Type must be {JSON} or {NDJSON}; got '{content_type or 'none'}'.")


@router.post(
    "/topics/{topic}/records",
    summary="Produce one record, a batch, or an NDJSON stream of records",
    openapi_extra=OPENAPI_EXTRA,
    responses=RESPONSES,
)
async def produce(
    request: Request,
    rt: RuntimeDep,
    topic: Annotated[str, Path(description="Topic name", max_length=249)],
    fmt: Annotated[str | None, Query(alias="format", description="Sets key_format and value_format")] = None,
    key_format: Annotated[str | None, Query(description="json | string | binary (default string)")] = None,
    value_format: Annotated[str | None, Query(description="json | string | binary (default json)")] = None,
    async_: Annotated[bool, Query(alias="async", description="202 once queued, without waiting for Kafka")] = False,
    prefer: Annotated[str | None, Header(description="`respond-async` is the same as async=true")] = None,
    idempotency_key: Annotated[
        str | None, Header(description="A retry with the same key and body returns the first answer")
    ] = None,
) -> Response:
    media = _media_type(request.headers.get("content-type"))
    formats = _formats(fmt, key_format, value_format)
    respond_async = async_ or (prefer is not None and "respond-async" in prefer.lower())
    limits = rt.settings.produce
    info = await rt.publisher.topic(topic)
    if media == NDJSON:
        return DuplexStreamingResponse(_ndjson(request, rt, info, formats), media_type=NDJSON)

    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise errors.BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters.")
        body = await _read_body(request, limits.max_body_bytes)
        scope = f"{topic}?{formats.key},{formats.value},{respond_async}"
        first = rt.idempotency.begin(idempotency_key, scope, body)
        if first is not None:
            status, content = await asyncio.shield(first)
            return Response(content, status, media_type=JSON, headers={"Idempotency-Replayed": "true"})
        try:
            response = await _produce_body(rt, info, body, formats, respond_async, idempotency_key)
        except errors.GatewayError as exc:
            response = error_response(exc)
        except BaseException:
            # Cancelled or crashed: forget the key so a retry really tries again.
            rt.idempotency.finish(idempotency_key, 503, _ABANDONED)
            raise
        rt.idempotency.finish(idempotency_key, response.status_code, bytes(response.body))
        return response

    body = await _read_body(request, limits.max_body_bytes)
    return await _produce_body(rt, info, body, formats, respond_async, None)


async def _produce_body(
    rt: Runtime,
    info: Any,
    body: bytes,
    formats: records.Formats,
    respond_async: bool,
    idempotency_key: str | None,
) -> Response:
    limits = rt.settings.produce
    items, is_batch = records.parse_body(body)
    if len(items) > limits.max_batch_records:
        raise errors.PayloadTooLarge(f"Batch of {len(items)} records is over the limit of {limits.max_batch_records}.")
    if is_batch and not items:
        raise errors.InvalidRecord("'records' must not be empty.")
    extra = [(IDEMPOTENCY_HEADER, idempotency_key.encode())] if idempotency_key else None
    prepared = [
        records.prepare(rec, formats, limits.max_record_bytes, extra, f"records[{i}]" if is_batch else "record")
        for i, rec in enumerate(items)
    ]
    pending = rt.publisher.submit(info, prepared)
    if respond_async:
        Publisher.detach(pending)
        failed = [p for p in pending if isinstance(p, errors.GatewayError)]
        if not is_batch and failed:
            return error_response(failed[0])
        return Response(_encode({"queued": len(pending) - len(failed)}), 202, media_type=JSON)
    outcomes = await Publisher.outcomes(pending)
    if not is_batch:
        out = outcomes[0]
        if isinstance(out, errors.GatewayError):
            return error_response(out)
        return Response(
            _encode({"topic": info.name, "partition": out.partition, "offset": out.offset, "timestamp": out.timestamp}),
            media_type=JSON,
        )
    status = _batch_status(outcomes)
    headers: dict[str, str] = {}
    for o in outcomes:
        if isinstance(o, errors.RetryLater):
            headers = retry_headers(o)
            break
    return Response(_encode({"results": [_delivered_json(o) for o in outcomes]}), status, headers, media_type=JSON)


async def _lines(request: Request, max_line: int) -> AsyncIterator[bytes]:
    """Lines of a streamed body, however its chunks fall; a too-long line is reported, not buffered."""
    buf = b""
    async for chunk in request.stream():
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            yield buf[:nl]
            buf = buf[nl + 1 :]
        if len(buf) > max_line:
            raise errors.PayloadTooLarge(f"An NDJSON line is over the limit of {max_line} bytes.")
    if buf.strip():
        yield buf


async def _ndjson(request: Request, rt: Runtime, info: Any, formats: records.Formats) -> AsyncIterator[bytes]:
    """One result line per input line, in order, written as deliveries complete; bounded in flight."""
    limits = rt.settings.produce
    window: deque[Pending] = deque()
    # A line longer than a record could ever be is refused before it is buffered whole.
    max_line = limits.max_record_bytes * 2 + 65536

    def result_line(p: Pending) -> bytes:
        if isinstance(p, errors.GatewayError):
            return _encode(error_body(p)) + b"\n"
        exc = p.exception()
        return _encode(_delivered_json(p.result() if exc is None else exc)) + b"\n"  # type: ignore[arg-type]

    async def ready(block: bool) -> bytes:
        out = []
        while window and (block or isinstance(window[0], errors.GatewayError) or window[0].done()):
            head = window[0]
            if isinstance(head, asyncio.Future) and not head.done():
                await asyncio.wait([head])
            out.append(result_line(window.popleft()))
            block = block and len(window) >= limits.ndjson_window
        return b"".join(out)

    lineno = 0
    try:
        async for line in _lines(request, max_line):
            lineno += 1
            if not line.strip():
                continue
            try:
                where = f"line {lineno}"
                rec = records.prepare(records.parse_line(line, where), formats, limits.max_record_bytes, None, where)
                window.append(rt.publisher.submit(info, [rec])[0])
            except errors.GatewayError as exc:
                window.append(exc)
            chunk = await ready(len(window) >= limits.ndjson_window)
            if chunk:
                yield chunk
    except errors.GatewayError as exc:
        window.append(exc)
    while window:
        yield await ready(True)
