"""Native consume: the SSE stream ``GET /topics/{topic}/events`` (API.md §2.1).

Three ways to serve one stream, chosen before the first byte so every refusal is a plain HTTP error:

- ``group=<id>``: a member of that Kafka consumer group (``gateway.groups``), committing what it wrote;
- ``latest`` without a cursor: a subscriber of the process's shared feed for that topic (``gateway.hub``);
- otherwise (``earliest``, a time, or a cursor): its own assign-mode consumer at exact positions.

Once the stream has started, a failure is an ``event: error`` and the end of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Header, Path, Query
from sse_starlette import EventSourceResponse

from gateway import codec, cursor, errors, groups, sse, streams
from gateway.api.deps import RuntimeDep
from gateway.api.sse_responses import FanOutResponse, StreamResponse
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.offsets import Offsets
from gateway.lifespan import Runtime, consumer_config

log = logging.getLogger(__name__)
router = APIRouter(tags=["consume"])

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_EXAMPLE_STREAM = (
    "retry: 2000\n: connected\n\n"
    "id: AQEAKgr0yF0\nevent: record\n"
    'data: {"topic":"orders","partition":0,"offset":41,"timestamp":1700000000000,"key":"user-1",'
    '"value":{"clicked":"buy"},"headers":{"source":"web"}}\n\n'
    "id: AQEAKwAGaBk\nevent: tombstone\n"
    'data: {"topic":"orders","partition":0,"offset":42,"timestamp":1700000000050,"key":"user-1",'
    '"value":null,"headers":{}}\n\n'
    "id: AQEALPjKBm4\nevent: record\n"
    'data: {"topic":"orders","partition":0,"offset":43,"timestamp":1700000000090,"key":"user-2",'
    '"value_b64":"/w==","decode_error":"value not valid JSON: ...","headers":{}}\n\n'
    ": ping - 2026-11-27 16:00:15.000000+00:00\n\n"
)
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An endless `text/event-stream`. First a `retry:` line and a comment; then one event per "
        "record: `id: <cursor>`, `event: record` (or `tombstone` for a null value), `data: {topic, partition, "
        "offset, timestamp, key, value, headers}` on one line; a value that does not decode in the asked format "
        "comes as `value_b64` + `decode_error`. Comment heartbeats keep idle streams alive. After the stream has "
        'started, a failure is `event: error` with `data: {"message": ...}` (for example `slow consumer`, or the '
        "topic deleted) and the stream ends; on shutdown the gateway sends a last `retry:` and ends it.",
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE_STREAM}},
    },
    400: {"description": "Bad query parameter or malformed cursor (40001)", **_ERR},
    404: {"description": "Unknown topic (40401) or partition (40402)", **_ERR},
    429: {"description": "Too many streams on this process (42901); see Retry-After", **_ERR},
    503: {"description": "Kafka unreachable or gateway draining (50301); see Retry-After", **_ERR},
}
DESCRIPTION = """\
Streams records as [server-sent events](https://html.spec.whatwg.org/multipage/server-sent-events.html),
for `EventSource`, curl (`curl -N`) and services.

**Resume.** Every event's `id` is an opaque cursor holding the next offset of *every* partition of the
stream. Reconnecting with it (`Last-Event-ID` header, which `EventSource` sends by itself, or
`last_event_id=`) on any gateway process yields exactly the records after that event. `from` is ignored
when resuming; partitions the cursor does not name (added since) start at their beginning.

**Without `group`** partitions are assigned directly and nothing is committed. Streams at `latest` (no
cursor) with the same topic, partitions, formats and filters share one Kafka consumer per process; a
subscriber more than `GATEWAY_SSE__SUBSCRIBER_BUFFER` events behind gets `event: error` (`slow consumer`)
and is closed, and resumes losslessly with its last event id.

**With `group`** the streams of that group, on any number of gateway processes, split the partitions
through Kafka's group protocol. Offsets of events written to the socket are committed (at-least-once), and
a reconnect resumes from the group's committed offsets (a cursor is then only checked, not used); `from`
applies to partitions the group has never committed. `partitions` cannot be combined with `group`.
"""


@router.get(
    "/topics/{topic}/events",
    summary="Stream a topic as server-sent events, resumable with Last-Event-ID",
    description=DESCRIPTION,
    response_class=EventSourceResponse,
    responses=SSE_RESPONSES,
)
async def events(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249, examples=["orders"])],
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            description="Where to start: `earliest`, `latest` (default), epoch milliseconds or RFC 3339. "
            "Ignored when resuming with a cursor.",
            examples=["earliest", "1700000000000", "2026-11-27T16:00:00Z"],
        ),
    ] = None,
    group: Annotated[
        str | None,
        Query(
            description="Consumer group: streams of one group split the partitions and commit what they wrote. "
            "With authentication on, it must match the caller's `group:` scopes if it has any (else 403)."
        ),
    ] = None,
    partitions: Annotated[
        str | None, Query(description="Comma-separated partitions (default all; not with `group`)", examples=["0,2"])
    ] = None,
    key: Annotated[str | None, Query(description="Only records whose key is exactly this text")] = None,
    filter_: Annotated[
        str | None,
        Query(
            alias="filter",
            description="`field.path=value`: only records whose JSON value has that field equal to the value "
            "(the value is JSON if it parses, e.g. `n=3`, `ok=true`, else text)",
            examples=["status=paid", "customer.tier=gold"],
        ),
    ] = None,
    fmt: Annotated[str | None, Query(alias="format", description="Sets both key_format and value_format")] = None,
    key_format: Annotated[str | None, Query(description="json | string | binary (default string)")] = None,
    value_format: Annotated[str | None, Query(description="json | string | binary (default json)")] = None,
    last_event_id_q: Annotated[
        str | None,
        Query(alias="last_event_id", description="Cursor to resume after, for clients that cannot set headers"),
    ] = None,
    # Declared for the contract; the authentication layer reads it, not this route.
    access_token: Annotated[
        str | None,
        Query(description="Credentials for `EventSource`, which cannot send `Authorization` (when auth is on)"),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="Cursor of the last event received; `EventSource` sends it on reconnect")
    ] = None,
) -> EventSourceResponse:
    hub = rt.hub
    if rt.draining or hub.draining:
        raise errors.Unavailable("The gateway is draining; reconnect to another instance.")
    info = await rt.metadata.topic(topic)
    both = codec.parse_format(fmt, "json", "format") if fmt else None
    token = last_event_id or last_event_id_q
    start, start_ms = streams.parse_start(from_)
    path, expected = streams.parse_filter(filter_)
    group_id = groups.parse_group(group)
    if group_id is not None and partitions:
        raise errors.BadRequest("'partitions' cannot be combined with 'group': the group assigns partitions.")
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
    if group_id is not None:
        mode = "group"
    elif spec.resume is None and spec.start == "latest":
        mode = "shared"
    else:
        mode = "assign"
    slot = hub.acquire(mode, rt.settings.produce.retry_after_s)
    if mode == "shared":
        try:
            sub = await hub.subscribe(spec, Offsets(rt.admin))
        except BaseException:
            slot.release()
            raise
        return FanOutResponse(rt, sub, slot)
    closers: list[Callable[[], Awaitable[None]]] = []

    async def cleanup() -> None:
        slot.release()
        while closers:
            await closers.pop()()

    try:
        body: AsyncGenerator[bytes, None]
        if mode == "group":
            consumer = await AsyncConsumer.create(consumer_config(rt.settings, group_id), rt.executor)
            closers.append(consumer.close)
            member = groups.GroupStream(consumer, spec)
            closers.append(member.close)
            await member.join()
            body = _group_stream(rt, member)
        else:
            # A connected consumer from the pool; it goes back, unassigned, when the stream ends.
            consumer, positions = await streams.open_assigned(rt.pool, Offsets(rt.admin), spec)
            closers.append(functools.partial(rt.pool.release, consumer))
            body = _assigned_stream(rt, consumer, spec, positions)
    except BaseException:
        await asyncio.shield(cleanup())
        raise
    cfg = rt.settings.sse
    return StreamResponse(
        _guarded(rt, mode, body, cleanup),
        cleanup=cleanup,
        ping=cfg.heartbeat_s,
        sep="\n",
        send_timeout=cfg.send_timeout_s,
        # sse-starlette cancels streams once shutdown is seen; give ours time to send the goodbye first.
        shutdown_grace_period=rt.settings.shutdown_grace_s * 0.8,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _guarded(
    rt: Runtime, mode: str, body: AsyncGenerator[bytes, None], cleanup: Callable[[], Awaitable[None]]
) -> AsyncGenerator[bytes, None]:
    """The prelude, the body, and after the start every failure as ``event: error``; cleanup always."""
    try:
        yield sse.prelude(rt.settings.sse.retry_ms)
        async with contextlib.aclosing(body):
            async for chunk in body:
                yield chunk
    except errors.GatewayError as exc:
        yield sse.error_event(exc.message)
    except KafkaException as exc:
        log.warning("%s stream failed: %s", mode, exc)
        yield sse.error_event(f"Kafka error: {exc.args[0] if exc.args else exc}")
    finally:
        # Shielded: a cancelled stream must still wait for a consume() running in a thread.
        await asyncio.shield(cleanup())


def _count(rt: Runtime, mode: str, events: int) -> None:
    if events:
        rt.metrics.sse_events.labels(mode).inc(events)


async def _assigned_stream(
    rt: Runtime, consumer: AsyncConsumer, spec: streams.StreamSpec, positions: dict[int, int]
) -> AsyncGenerator[bytes, None]:
    cfg = rt.settings.sse
    frames = streams.assigned_frames(
        consumer, spec, positions, cfg.batch_max_records, cfg.poll_timeout_s, cfg.first_batch_records
    )
    async with contextlib.aclosing(frames):
        async for chunk, events in frames:
            if chunk:
                yield chunk
                _count(rt, "assign", events)
            elif await rt.metadata.gone(spec.topic.name):
                raise errors.TopicDeleted(spec.topic.name)
            if rt.hub.draining:
                break
    yield sse.goodbye(cfg.retry_ms)


async def _group_stream(rt: Runtime, member: groups.GroupStream) -> AsyncGenerator[bytes, None]:
    cfg = rt.settings.sse
    frames = member.frames(cfg.batch_max_records, cfg.poll_timeout_s)
    async with contextlib.aclosing(frames):
        async for chunk, events in frames:
            if chunk:
                yield chunk
                _count(rt, "group", events)
            elif await rt.metadata.gone(member.spec.topic.name):
                raise errors.TopicDeleted(member.spec.topic.name)
            # The chunk is on the socket now (or was all filtered out): commit it (at-least-once).
            await member.written()
            if rt.hub.draining:
                break
    yield sse.goodbye(cfg.retry_ms)
