"""Native produce: ``POST /topics/{topic}/records`` (API.md §1).

The body is read and decoded here with msgspec rather than through a pydantic model: values stay raw
JSON bytes from the request to Kafka (see ``gateway.records``). The OpenAPI schema is generated from
msgspec types as well (``records.ProduceBody``), so the documentation names the same fields.

NDJSON bodies are streamed by ``gateway.api.produce_ndjson``; the OpenAPI of the route is in
``gateway.api.produce_openapi``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway import codec, errors, records
from gateway.api.errors import error_body, error_response, retry_headers, status_and_code
from gateway.api.produce_ndjson import ndjson_results, outcome_body
from gateway.api.produce_openapi import JSON, MAX_TOPIC_CHARS, NDJSON, OPENAPI_EXTRA, RESPONSES
from gateway.api.raw_route import RawRoute
from gateway.kafka.delivery import Batch, Delivered
from gateway.kafka.metadata import TopicInfo
from gateway.lifespan import Runtime
from gateway.publish import Publisher

router = APIRouter(tags=["produce"], route_class=RawRoute)

_encode = msgspec.json.encode
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS = 255
_ABANDONED = _encode(
    {"error_code": 50301, "message": "The first request with this Idempotency-Key did not finish; retry."}
)


_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off", ""))


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    text = value.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise errors.BadRequest(f"Query parameter '{name}' must be true or false; got '{value}'.")


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


def _batch_status(failed: list[errors.GatewayError], total: int, ok: int = 200) -> int:
    """``ok`` if nothing failed, 207 if some did, the failure's own status if all did for one cause."""
    if not failed:
        return ok
    if len(failed) < total:
        return 207
    causes = {status_and_code(e) for e in failed}
    return causes.pop()[0] if len(causes) == 1 else 207


# The request headers the route reads, by their index in ``_produce_headers``' answer.
_PRODUCE_HEADERS = {b"content-type": 0, b"content-length": 1, b"prefer": 2, b"idempotency-key": 3}
_NO_QUERY: Mapping[str, str] = {}
_DEFAULT_FORMATS = records.Formats()


def _produce_headers(raw: list[tuple[bytes, bytes]]) -> list[str | None]:
    """Content-Type, Content-Length, Prefer and Idempotency-Key (the first of each, as Starlette's
    ``Headers.get``), in one pass over the request's headers rather than a mapping built per request."""
    found: list[str | None] = [None, None, None, None]
    for name, value in raw:
        i = _PRODUCE_HEADERS.get(name)
        if i is not None and found[i] is None:
            found[i] = value.decode("latin-1")
    return found


def _formats(fmt: str | None, key_format: str | None, value_format: str | None) -> records.Formats:
    both = codec.parse_format(fmt, "json", "format") if fmt else None
    return records.Formats(
        key=codec.parse_format(key_format, both or "string", "key_format"),
        value=codec.parse_format(value_format, both or "json", "value_format"),
    )


async def _read_body(request: Request, limit: int, length: str | None) -> bytes:
    # Refused before a byte of the body is read.
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
    description=(
        'One record, `{"records": [...]}`, or (`Content-Type: application/x-ndjson`) a stream of records, one '
        "per line. Key `string` and value `json` by default; `format` sets both. A batch is validated whole "
        "before anything is produced. Success only after acks=all. See the README's *Producing* section."
    ),
    openapi_extra=OPENAPI_EXTRA,
    responses=RESPONSES,
)
async def produce(request: Request) -> Response:
    # Parameters are read by hand rather than declared: FastAPI's per-parameter validation cost about
    # as much CPU as the whole single-record produce. They are documented in PARAMETERS instead.
    rt: Runtime = request.app.state.runtime
    topic: str = request.path_params["topic"]
    if len(topic) > MAX_TOPIC_CHARS:
        raise errors.BadRequest(f"Topic names have at most {MAX_TOPIC_CHARS} characters.")
    query: Mapping[str, str] = request.query_params if request.scope["query_string"] else _NO_QUERY
    fmt, key_format, value_format = query.get("format"), query.get("key_format"), query.get("value_format")
    async_ = _flag(query.get("async"), "async")
    content_type, length, prefer, idempotency_key = _produce_headers(request.scope["headers"])
    media = _media_type(content_type)
    formats = _formats(fmt, key_format, value_format) if fmt or key_format or value_format else _DEFAULT_FORMATS
    respond_async = async_ or (prefer is not None and "respond-async" in prefer.lower())
    limits = rt.settings.produce
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise errors.BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters.")
    info = await rt.publisher.topic(topic)
    if media == NDJSON:
        return DuplexStreamingResponse(ndjson_results(request, rt, info, formats), media_type=NDJSON)

    body = await _read_body(request, limits.max_body_bytes, length)
    if idempotency_key is None:
        return await _produce_body(rt, info, body, formats, respond_async, None)

    scope = f"{topic}?{formats.key},{formats.value},{respond_async}"
    first, answer = rt.idempotency.begin(idempotency_key, scope, body)
    if not first:
        status, content = await asyncio.shield(answer)
        headers = {"Idempotency-Replayed": "true"}
        if status in (429, 503):
            headers["Retry-After"] = str(limits.retry_after_s)
        return Response(content, status, media_type=JSON, headers=headers)

    async def produce_once() -> Response:
        try:
            return await _produce_body(rt, info, body, formats, respond_async, idempotency_key)
        except errors.GatewayError as exc:
            return error_response(exc)

    def remember(task: asyncio.Task[Response]) -> None:
        if task.cancelled() or task.exception() is not None:
            # Crashed: forget the key so a retry really tries again.
            rt.idempotency.finish(idempotency_key, answer, 503, _ABANDONED)
        else:
            response = task.result()
            rt.idempotency.finish(idempotency_key, answer, response.status_code, bytes(response.body))

    # The first request finishes (and is remembered) even if its client goes away meanwhile: its
    # records are in flight, so the retry must get this answer rather than produce them again.
    task = asyncio.ensure_future(produce_once())
    task.add_done_callback(remember)
    return await asyncio.shield(task)


async def _produce_body(
    rt: Runtime,
    info: TopicInfo,
    body: bytes,
    formats: records.Formats,
    respond_async: bool,
    idempotency_key: str | None,
) -> Response:
    limits = rt.settings.produce
    items, is_batch = records.parse_body(body, formats)
    if len(items) > limits.max_batch_records:
        raise errors.PayloadTooLarge(f"Batch of {len(items)} records is over the limit of {limits.max_batch_records}.")
    extra = [(IDEMPOTENCY_HEADER, idempotency_key.encode())] if idempotency_key else None
    prepared = records.prepare(items, formats, limits.max_record_bytes, extra, None if is_batch else "record")
    batch = rt.publisher.submit(info, prepared, wait=not respond_async)
    if respond_async:
        return _queued(batch, len(prepared), is_batch)
    await Publisher.settled(batch)
    if is_batch:
        # Every record delivered (the usual answer): written from the delivery reports as they are.
        answer = batch.results_json()
        if answer is not None:
            return Response(answer, media_type=JSON)
    outcomes = batch.outcomes()
    if not is_batch:
        out = outcomes[0]
        if isinstance(out, errors.GatewayError):
            return error_response(out)
        return Response(
            _encode({"topic": info.name, "partition": out.partition, "offset": out.offset, "timestamp": out.timestamp}),
            media_type=JSON,
        )
    failed = [o for o in outcomes if type(o) is not Delivered] if batch.failed or batch.refused else []
    headers = next((retry_headers(e) for e in failed if isinstance(e, errors.RetryLater)), None)
    return Response(
        _encode({"results": [outcome_body(o) for o in outcomes] if failed else outcomes}),
        _batch_status(failed, len(outcomes)),  # type: ignore[arg-type]
        headers,
        media_type=JSON,
    )


def _queued(batch: Batch, total: int, is_batch: bool) -> Response:
    """202 for ``async``: records refused before queueing (bad partition, full queue) are reported."""
    refused = batch.refused
    if not refused:
        return Response(_encode({"queued": total}), 202, media_type=JSON)
    # A refused record never reached librdkafka: its slot is final already.
    failed: list[errors.GatewayError] = [batch.results[i] for i in refused]  # type: ignore[misc]
    if not is_batch:
        return error_response(failed[0])
    slot: list[Any] = [{"queued": True}] * total
    for i in refused:
        slot[i] = error_body(batch.results[i])  # type: ignore[arg-type]
    headers = next((retry_headers(e) for e in failed if isinstance(e, errors.RetryLater)), None)
    status = _batch_status(failed, total, 202)
    return Response(_encode({"queued": total - len(refused), "results": slot}), status, headers, media_type=JSON)
