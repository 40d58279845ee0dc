"""Stateless reads (API.md §2.2): records of one partition from an offset, and offsets by time.

Records come in the same JSON shape as the data of an SSE event (``gateway.sse.record_data``), so a
client can switch between streaming and polling without a second parser.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
from fastapi import APIRouter, Path, Query, Response

from gateway import codec, errors, sse
from gateway.api.admin.client import cluster_admin
from gateway.api.deps import RuntimeDep

router = APIRouter(tags=["consume"])

JSON = "application/json"
_ERR_SCHEMA = {"schema": {"$ref": "#/components/schemas/Error"}}


def _err(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {**_ERR_SCHEMA, "example": example}}}


RECORDS_EXAMPLE = {
    "records": [
        {
            "topic": "orders",
            "partition": 0,
            "offset": 41,
            "timestamp": 1700000000000,
            "key": "user-1",
            "value": {"clicked": "buy"},
            "headers": {"source": "web"},
        }
    ],
    "next_offset": 42,
}


@router.get(
    "/topics/{topic}/partitions/{partition}/records",
    summary="Read records of one partition from an offset (long-poll when there is nothing yet)",
    responses={
        200: {
            "description": "`records` in offset order (each as an SSE event's data) and `next_offset`, the offset "
            "to ask for next. Limits never skip a record: the record that would pass `max_bytes` is left for the "
            "next request, and the first record is always returned whatever its size. An offset below the "
            "partition's first (removed by retention) starts at the first.",
            "content": {JSON: {"example": RECORDS_EXAMPLE}},
        },
        400: _err(
            "Bad query parameter, or an offset past the partition's end", {"error_code": 40001, "message": "..."}
        ),
        404: _err("Unknown topic (40401) or partition (40402)", {"error_code": 40402, "message": "..."}),
        429: _err(
            "Every read consumer is busy (long-polls hold theirs); see Retry-After",
            {"error_code": 42901, "message": "..."},
        ),
        503: _err("Kafka unreachable; see Retry-After", {"error_code": 50301, "message": "..."}),
    },
)
async def read_records(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249)],
    partition: Annotated[int, Path(ge=0)],
    offset: Annotated[
        int | None, Query(ge=0, description="First offset to read (default: the partition's first)")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="Most records to return (default 100, capped by settings)")
    ] = None,
    max_bytes: Annotated[
        int | None, Query(ge=1, description="Approximate byte budget (keys, values, headers); at least one record")
    ] = None,
    timeout_ms: Annotated[
        int, Query(ge=0, description="How long to wait when there is nothing at `offset` yet (capped by settings)")
    ] = 0,
    fmt: Annotated[str | None, Query(alias="format", description="Sets key_format and value_format")] = None,
    key_format: Annotated[str | None, Query(description="json | string | binary (default string)")] = None,
    value_format: Annotated[str | None, Query(description="json | string | binary (default json)")] = None,
) -> Response:
    cfg = rt.settings.reads
    both = codec.parse_format(fmt, "json", "format") if fmt else None
    kf = codec.parse_format(key_format, both or "string", "key_format")
    vf = codec.parse_format(value_format, both or "json", "value_format")
    await rt.metadata.partition(topic, partition)
    result = await rt.reads.read(
        topic,
        partition,
        offset,
        min(limit or cfg.default_limit, cfg.max_limit),
        max_bytes or cfg.default_max_bytes,
        min(timeout_ms, cfg.max_timeout_ms) / 1000,
    )
    topic_json = msgspec.json.encode(topic)
    items = [
        sse.record_data(
            topic_json,
            partition,
            cast(int, m.offset()),
            m.timestamp()[1],
            m.key(),
            m.value(),
            cast("list[tuple[str, bytes | None]] | None", m.headers()),
            kf,
            vf,
        )
        for m in result.messages
    ]
    body = b'{"records":[' + b",".join(items) + b'],"next_offset":%d}' % result.next_offset
    return Response(body, media_type=JSON)


@router.get(
    "/topics/{topic}/offsets",
    summary="Offsets of every partition: at or after a time, or earliest and latest",
    responses={
        200: {
            "description": "With `timestamp`: each partition's first offset whose record is at or after that time "
            "(`null` where no record is that recent). Without: each partition's `earliest` and `latest` offsets "
            "(`latest` is the offset the next record will get).",
            "content": {
                JSON: {
                    "examples": {
                        "timestamp": {
                            "value": {"offsets": [{"partition": 0, "offset": 17}, {"partition": 1, "offset": None}]}
                        },
                        "watermarks": {"value": {"offsets": [{"partition": 0, "earliest": 0, "latest": 42}]}},
                    }
                }
            },
        },
        400: _err("Bad timestamp", {"error_code": 40001, "message": "..."}),
        404: _err("Unknown topic", {"error_code": 40401, "message": "Topic 'orders' not found."}),
        503: _err("Kafka unreachable; see Retry-After", {"error_code": 50301, "message": "..."}),
    },
)
async def offsets(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249)],
    timestamp: Annotated[str | None, Query(description="Epoch milliseconds or RFC 3339")] = None,
) -> Response:
    info = await rt.metadata.topic(topic)
    admin = cluster_admin(rt)
    parts = range(info.partitions)
    if timestamp is not None:
        try:
            ts = codec.parse_timestamp(timestamp, "timestamp")
        except errors.InvalidRecord as exc:
            raise errors.BadRequest(exc.message) from None
        found = await admin.list_offsets(topic, parts, ts)
        body: list[dict[str, Any]] = [{"partition": p, "offset": found.get(p)} for p in parts]
    else:
        earliest = await admin.list_offsets(topic, parts, "earliest")
        latest = await admin.list_offsets(topic, parts, "latest")
        body = [{"partition": p, "earliest": earliest.get(p), "latest": latest.get(p)} for p in parts]
    return Response(msgspec.json.encode({"offsets": body}), media_type=JSON)
