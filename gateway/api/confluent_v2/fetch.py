"""Confluent v2 fetch: ``GET /consumers/{group}/instances/{instance}/records``.

Records go out in the instance's embedded format (``binary``: base64 strings; ``json``: the JSON
itself); ``max_bytes`` never drops a record: what does not fit comes with the next fetch.
"""

from __future__ import annotations

from typing import Annotated

from confluent_kafka import Message
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gateway import codec, errors
from gateway.api.confluent_v2.consumers import Group, Instance, instance_of
from gateway.api.confluent_v2.docs import E404_INSTANCE
from gateway.api.confluent_v2.media import V2, V2_BINARY, V2_JSON, encode, negotiate
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs

router = APIRouter(tags=["confluent v2"])


def _record_json(msg: Message, fmt: codec.Format) -> bytes:
    def part(data: bytes | None) -> bytes:
        try:
            return codec.decode(data, fmt)
        except codec.DecodeFailure:
            # Not JSON: rather than fail every fetch on one record (the Confluent proxy answers 500
            # forever), hand it over as a JSON string of its text.
            return encode((data or b"").decode("utf-8", "replace"))

    return b"".join(
        (
            b'{"topic":',
            encode(msg.topic()),
            b',"key":',
            part(msg.key()),
            b',"value":',
            part(msg.value()),
            b',"partition":',
            str(msg.partition()).encode(),
            b',"offset":',
            str(msg.offset()).encode(),
            b"}",
        )
    )


@router.get(
    "/consumers/{group}/instances/{instance}/records",
    summary="Confluent v2: fetch records; max_bytes never drops a record",
    responses={
        200: {
            "description": "Records in the instance's format. At most `max_bytes` of keys and values, but at least "
            "one record when any is available; records that do not fit are returned by the next fetch.",
            "content": {
                V2_BINARY: {
                    "example": [
                        {"topic": "test", "key": "a2V5", "value": "Y29uZmx1ZW50", "partition": 1, "offset": 100}
                    ]
                },
                V2_JSON: {
                    "example": [
                        {"topic": "test", "key": "somekey", "value": {"foo": "bar"}, "partition": 1, "offset": 10}
                    ]
                },
            },
        },
        **errs(
            (400, "Bad query parameter (40001)"),
            E404_INSTANCE,
            (406, "Accept names another embedded format than the instance's (40601)"),
            (503, "Kafka error while fetching (50301)"),
        ),
    },
)
async def records_(
    request: Request,
    rt: RuntimeDep,
    group: Group,
    instance: Instance,
    timeout_ms: Annotated[
        int | None, Query(alias="timeout", description="Longest wait in ms (bounded by the instance's)")
    ] = None,
    max_bytes: Annotated[int | None, Query(description="Most bytes of keys and values in the response")] = None,
) -> Response:
    inst = instance_of(rt, group, instance)
    fmt = inst.config.format
    preferred = V2_BINARY if fmt == "binary" else V2_JSON
    offered = {preferred, "application/json", "application/vnd.kafka+json"} | ({V2} if fmt == "binary" else set())
    try:
        negotiate(request.headers.get("accept"), offered, preferred)
    except errors.NotAcceptable:
        raise errors.NotAcceptable(
            "The requested embedded data format does not match the deserializer for this consumer instance"
        ) from None
    msgs = await inst.fetch(timeout_ms, max_bytes)
    body = b"[" + b",".join(_record_json(m, fmt) for m in msgs) + b"]"
    return Response(body, media_type=preferred)
