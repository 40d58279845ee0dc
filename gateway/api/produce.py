"""Native produce: ``POST /topics/{topic}/records`` (API.md §1).

The body is read and decoded here with msgspec rather than through a pydantic model: values stay raw
JSON bytes from the request to Kafka (see ``gateway.records``). The OpenAPI schema is generated from
msgspec types as well (``records.ProduceBody``), so the documentation names the same fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway import codec, errors, records
from gateway.api.errors import error_body, error_response, retry_headers, status_and_code
from gateway.api.security import RawRoute
from gateway.kafka.metadata import TopicInfo
from gateway.kafka.producer import Batch, Delivered, Outcome
from gateway.lifespan import Runtime
from gateway.publish import InOrder, Publisher

router = APIRouter(tags=["produce"], route_class=RawRoute)

_encode = msgspec.json.encode
_encode_lines = msgspec.json.Encoder().encode_lines
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
_ERR_REF = {"$ref": "#/components/schemas/Error"}


def _err(description: str, **examples: tuple[int, str]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": _ERR_REF,
                "examples": {name: {"value": {"error_code": c, "message": m}} for name, (c, m) in examples.items()},
            }
        },
    }


MAX_TOPIC_CHARS = 249
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


def _param(where: str, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


_FORMAT = {"type": "string", "enum": ["json", "string", "binary"]}
PARAMETERS = [
    _param("path", "topic", "Topic name", {"type": "string", "maxLength": MAX_TOPIC_CHARS}),
    _param("query", "format", "Sets key_format and value_format", _FORMAT),
    _param("query", "key_format", "How the key is written (default string)", _FORMAT),
    _param("query", "value_format", "How the value is written (default json)", _FORMAT),
    _param("query", "async", "202 once queued, without waiting for Kafka's acknowledgement", {"type": "boolean"}),
    _param("header", "prefer", "`respond-async` is the same as async=true", {"type": "string"}),
    _param(
        "header",
        "idempotency-key",
        "1-255 characters. A retry with the same key, topic, formats and body within the window returns the "
        "first answer and produces nothing; the key is written as record header `idempotency-key`. "
        "Ignored for NDJSON.",
        {"type": "string", "minLength": 1, "maxLength": 255},
    ),
]

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}

OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": PARAMETERS,
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": _SCHEMAS["body"],
                "examples": {
                    "one": {
                        "summary": "One record",
                        "value": {"key": "user-1", "value": {"clicked": "buy"}, "headers": {"source": "web"}},
                    },
                    "batch": {
                        "summary": "A batch (results in input order)",
                        "value": {"records": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "partition": 0}]},
                    },
                    "timestamp": {
                        "summary": "Explicit timestamp (RFC 3339 or epoch ms)",
                        "value": {"key": "k", "value": "v", "timestamp": "2024-05-01T12:00:00.250Z"},
                    },
                    "tombstone": {"summary": "Tombstone (null value)", "value": {"key": "user-1", "value": None}},
                    "binary": {
                        "summary": "With ?value_format=binary: base64 text, written decoded",
                        "value": {"key": "k", "value": "aGVsbG8="},
                    },
                },
            },
            NDJSON: {
                "schema": {"type": "string", "description": "One record object per line (blank lines are skipped)."},
                "example": '{"key":"a","value":1}\n{"key":"b","value":2}\n',
            },
        },
    },
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every record acknowledged by Kafka (acks=all). One record: its position; a batch: "
        "`results` in input order. NDJSON: one result line per non-blank input line, in order, each a "
        "position or an error (a bad line does not end the stream).",
        "headers": {"Idempotency-Replayed": {"description": "`true` when this is a remembered answer"}},
        "content": {
            JSON: {
                "examples": {
                    "one": {"value": {"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1700000000000}},
                    "batch": {
                        "value": {
                            "results": [
                                {"partition": 0, "offset": 42, "timestamp": 1700000000000},
                                {"partition": 2, "offset": 7, "timestamp": 1700000000000},
                            ]
                        }
                    },
                }
            },
            NDJSON: {
                "example": '{"partition":0,"offset":42,"timestamp":1700000000000}\n'
                '{"error_code":42201,"message":"Invalid record: line 2: \'value\' is required '
                '(null writes a tombstone)."}\n'
            },
        },
    },
    202: {
        "description": "Queued (`?async=true` or `Prefer: respond-async`), not yet acknowledged; no offsets.",
        "content": {JSON: {"example": {"queued": 2}}},
    },
    207: {
        "description": "Some records of the batch failed, each for its own reason; each result is a position or "
        'an error. With async, queued records show as `{"queued": true}`.',
        "headers": _RETRY_AFTER,
        "content": {
            JSON: {
                "example": {
                    "results": [
                        {"partition": 0, "offset": 7, "timestamp": 1700000000000},
                        {"error_code": 40402, "message": "Partition 9 of topic 'orders' not found."},
                    ]
                }
            }
        },
    },
    400: _err(
        "Malformed JSON, bad query parameter or bad Idempotency-Key",
        malformed=(40001, "Malformed JSON: Input data was truncated."),
        query=(40001, "Query parameter 'value_format' must be one of json, string, binary; got 'xml'."),
    ),
    404: _err(
        "Unknown topic (40401, answered from cached metadata); for one record, unknown partition (40402). "
        "In a batch where every record names a missing partition, 404 with `results`.",
        topic=(40401, "Topic 'orders' not found."),
        partition=(40402, "record: Partition 9 of topic 'orders' not found."),
    ),
    413: _err(
        "Body, record or batch over the limits (checked before anything is produced)",
        body=(41301, "Body of 9000000 bytes is over the limit of 8388608 bytes."),
        record=(41301, "records[3]: 1000017 bytes is over the limit of 1000000 bytes per record."),
        batch=(41301, "Batch of 10001 records is over the limit of 10000."),
    ),
    415: _err(
        "Content-Type is not application/json or application/x-ndjson",
        media=(41501, "Content-Type must be application/json or application/x-ndjson; got 'text/plain'."),
    ),
    422: _err(
        "Well-formed JSON that breaks the record schema (names the record; nothing is produced), or an "
        "Idempotency-Key reused with a different request",
        schema=(42201, "Invalid record: records[3].key must be a JSON string or null with key_format=string, got int."),
        idempotency=(
            42201,
            "This Idempotency-Key was already used with a different request body, topic or format; "
            "use a new key for a new request.",
        ),
    ),
    429: {
        **_err(
            "The gateway's producer queue is full; nothing of this request was produced",
            full=(42901, "The gateway's producer queue is full (200000 records in flight); retry shortly."),
        ),
        "headers": _RETRY_AFTER,
    },
    503: {
        **_err(
            "Kafka unreachable or delivery timed out, or the gateway is shutting down",
            timeout=(
                50301,
                "Kafka did not acknowledge the record within the delivery timeout; it may or may not have been "
                "written. Retry (with an Idempotency-Key to be safe).",
            ),
        ),
        "headers": _RETRY_AFTER,
    },
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


def _result(out: Outcome) -> Any:
    # Delivered encodes as {"partition","offset","timestamp"}; an error as {"error_code","message"}.
    return out if type(out) is Delivered else error_body(out)  # type: ignore[arg-type]


def _batch_status(failed: list[errors.GatewayError], total: int, ok: int = 200) -> int:
    """``ok`` if nothing failed, 207 if some did, the failure's own status if all did for one cause."""
    if not failed:
        return ok
    if len(failed) < total:
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
    query = request.query_params
    fmt, key_format, value_format = query.get("format"), query.get("key_format"), query.get("value_format")
    async_ = _flag(query.get("async"), "async")
    prefer = request.headers.get("prefer")
    idempotency_key = request.headers.get("idempotency-key")
    media = _media_type(request.headers.get("content-type"))
    formats = _formats(fmt, key_format, value_format)
    respond_async = async_ or (prefer is not None and "respond-async" in prefer.lower())
    limits = rt.settings.produce
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise errors.BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters.")
    info = await rt.publisher.topic(topic)
    if media == NDJSON:
        return DuplexStreamingResponse(_ndjson(request, rt, info, formats), media_type=NDJSON)

    body = await _read_body(request, limits.max_body_bytes)
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
    outcomes = await Publisher.outcomes(batch)
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
        # All delivered: the Delivered structs encode as they are, no Python step per record.
        _encode({"results": [_result(o) for o in outcomes] if failed else outcomes}),
        _batch_status(failed, len(outcomes)),  # type: ignore[arg-type]
        headers,
        media_type=JSON,
    )


def _queued(batch: Batch, total: int, is_batch: bool) -> Response:
    """202 for ``async``: records refused before queueing (bad partition, full queue) are reported."""
    refused = batch.refused
    if not refused:
        return Response(_encode({"queued": total}), 202, media_type=JSON)
    # The poll thread never writes a refused record's slot, so reading those slots now is safe.
    failed: list[errors.GatewayError] = [batch.results[i] for i in refused]  # type: ignore[misc]
    if not is_batch:
        return error_response(failed[0])
    slot: list[Any] = [{"queued": True}] * total
    for i in refused:
        slot[i] = error_body(batch.results[i])  # type: ignore[arg-type]
    headers = next((retry_headers(e) for e in failed if isinstance(e, errors.RetryLater)), None)
    status = _batch_status(failed, total, 202)
    return Response(_encode({"queued": total - len(refused), "results": slot}), status, headers, media_type=JSON)


def _failed(topic: str, errs: list[errors.GatewayError]) -> Batch:
    """A batch of lines that failed before reaching the producer."""
    batch = Batch(topic, list(errs), None)
    batch.refused = list(range(len(errs)))
    return batch


async def _line_groups(request: Request, max_line: int, max_group: int) -> AsyncIterator[list[bytes]]:
    """The body's lines, grouped as they arrive (≤ ``max_group`` per group); a too-long line is refused
    before it is buffered whole."""
    parts: list[bytes] = []  # an unfinished line, kept in pieces so a long line is not copied per chunk
    partial_len = 0
    async for chunk in request.stream():
        if b"\n" not in chunk:
            parts.append(chunk)
            partial_len += len(chunk)
            if partial_len > max_line:
                raise errors.PayloadTooLarge(f"An NDJSON line is over the limit of {max_line} bytes.")
            continue
        if parts:
            parts.append(chunk)
            chunk = b"".join(parts)
            parts = []
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            parts.append(rest)
        partial_len = len(rest)
        for start in range(0, len(lines), max_group):
            yield lines[start : start + max_group]
    if parts:
        yield [b"".join(parts)]


async def _ndjson(request: Request, rt: Runtime, info: TopicInfo, formats: records.Formats) -> AsyncIterator[bytes]:
    """One result line per input line, in order, written as deliveries complete; bounded in flight.

    A reader task turns incoming lines into batches (one per chunk of the body) while this generator
    writes results, so a client that waits for a line's result before sending the next is served.
    """
    limits = rt.settings.produce
    window = limits.ndjson_window
    # A line longer than a record could ever be is refused before it is buffered whole.
    max_line = limits.max_record_bytes * 2 + 65536
    stream: InOrder[None] = InOrder(window)

    async def reader() -> None:
        lineno = 0
        try:
            async for lines in _line_groups(request, max_line, window):
                prepared: list[records.Prepared] = []
                failed: list[tuple[int, errors.GatewayError]] = []
                for line in lines:
                    lineno += 1
                    if not line.strip():
                        continue
                    try:
                        where = f"line {lineno}"
                        rec = records.parse_line(line, formats, where)
                        prepared.extend(records.prepare([rec], formats, limits.max_record_bytes, None, where))
                    except errors.GatewayError as exc:
                        failed.append((len(prepared), exc))
                        prepared.append(records.PLACEHOLDER)
                if not prepared:
                    continue
                await stream.wait_for_room()
                try:
                    batch = rt.publisher.submit(info, prepared, failed=failed)
                except errors.GatewayError as exc:  # 429/503 before anything of this group was produced
                    batch = _failed(info.name, [exc] * len(prepared))
                stream.add(batch, None, len(prepared))
        except errors.GatewayError as exc:  # a line over the limit: say so, then end the stream
            stream.add(_failed(info.name, [exc]), None, 0)

    async for done in stream.run(reader):
        out = []
        for batch, _ in done:
            results = batch.outcomes()
            out.append(_encode_lines([_result(o) for o in results] if batch.failed or batch.refused else results))
        yield b"".join(out)
