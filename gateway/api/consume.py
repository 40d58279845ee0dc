"""Native consume: the SSE stream ``GET /topics/{topic}/events`` (API.md §2.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Path, Query
from sse_starlette import EventSourceResponse

from gateway import codec, cursor, errors, sse, streams
from gateway.api.deps import RuntimeDep
from gateway.kafka.consumer import AsyncConsumer
from gateway.lifespan import Runtime, consumer_config

router = APIRouter(tags=["consume"])

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An endless `text/event-stream`. First a `retry:` line and a comment; then one event per "
        "record: `id: <cursor>`, `event: record` (or `tombstone` for a null value), `data: {topic, partition, "
        "offset, timestamp, key, value, headers}` on one line. Comment heartbeats during silence.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'retry: 2000\n: connected\n\nid: AQEAKgAAAAA\nevent: record\ndata: {"topic":"orders",'
                '"partition":0,"offset":41,"timestamp":1700000000000,"key":"user-1","value":{"clicked":"buy"},'
                '"headers":{}}\n\n',
            }
        },
    },
    400: {"description": "Bad query parameter or malformed cursor", **_ERR},
    404: {"description": "Unknown topic (40401) or partition (40402)", **_ERR},
    429: {"description": "Too many streams on this process; see Retry-After", **_ERR},
    503: {"description": "Kafka unreachable or gateway draining; see Retry-After", **_ERR},
}


@router.get(
    "/topics/{topic}/events",
    summary="Stream a topic as server-sent events, resumable with Last-Event-ID",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSES,
)
async def events(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249)],
    from_: Annotated[
        str | None, Query(alias="from", description="earliest | latest | epoch ms | RFC 3339 (default latest)")
    ] = None,
    partitions: Annotated[str | None, Query(description="Comma-separated partitions, e.g. 0,2")] = None,
    key: Annotated[str | None, Query(description="Only records with exactly this key")] = None,
    filter_: Annotated[
        str | None, Query(alias="filter", description="field.path=value: JSON value field equality")
    ] = None,
    fmt: Annotated[str | None, Query(alias="format", description="Sets key_format and value_format")] = None,
    key_format: Annotated[str | None, Query(description="json | string | binary (default string)")] = None,
    value_format: Annotated[str | None, Query(description="json | string | binary (default json)")] = None,
    last_event_id_q: Annotated[
        str | None, Query(alias="last_event_id", description="Cursor, for clients that cannot set headers")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Cursor of the last event received")] = None,
) -> EventSourceResponse:
    if rt.draining:
        raise errors.Unavailable("The gateway is draining; reconnect to another instance.")
    info = await rt.metadata.topic(topic)
    both = codec.parse_format(fmt, "json", "format") if fmt else None
    token = last_event_id or last_event_id_q
    start, start_ms = streams.parse_start(from_)
    path, expected = streams.parse_filter(filter_)
    spec = streams.StreamSpec(
        topic=info,
        partitions=streams.parse_partitions(partitions, info),
        start=start,
        start_ms=start_ms,
        resume=cursor.decode(topic, token) if token else None,
        key_format=codec.parse_format(key_format, both or "string", "key_format"),
        value_format=codec.parse_format(value_format, both or "json", "value_format"),
        key=key,
        filter_path=path,
        filter_value=expected,
    )
    if rt.open_streams >= rt.settings.sse.max_streams:
        raise errors.Backpressure("Too many streams on this gateway instance; retry shortly.")
    consumer = await AsyncConsumer.create(consumer_config(rt.settings), rt.executor)
    try:
        positions = await streams.start_positions(consumer, spec)
    except BaseException:
        await asyncio.shield(consumer.close())
        raise
    shutdown = anyio.Event()
    cfg = rt.settings.sse
    return EventSourceResponse(
        _stream(rt, consumer, spec, positions, shutdown),
        ping=cfg.heartbeat_s,
        send_timeout=cfg.send_timeout_s,
        shutdown_event=shutdown,
        shutdown_grace_period=min(2.0, rt.settings.shutdown_grace_s),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    rt: Runtime,
    consumer: AsyncConsumer,
    spec: streams.StreamSpec,
    positions: dict[int, int],
    shutdown: anyio.Event,
) -> AsyncIterator[bytes]:
    cfg = rt.settings.sse
    rt.open_streams += 1
    try:
        yield sse.prelude(cfg.retry_ms)
        frames = streams.assigned_frames(consumer, spec, positions, cfg.batch_max_records, cfg.poll_timeout_s)
        async for chunk in frames:
            if chunk:
                yield chunk
            if shutdown.is_set():
                break
        yield sse.goodbye(cfg.retry_ms)
    except errors.GatewayError as exc:
        yield sse.error_event(exc.message)
    finally:
        rt.open_streams -= 1
        # Shielded: a cancelled stream must still wait for a consume() running in a thread.
        await asyncio.shield(consumer.close())
