"""Confluent v3 produce: ``POST /v3/clusters/{cluster_id}/topics/{topic}/records``.

One JSON record, or many concatenated (``{...}{...}``, any whitespace between) on one chunked
request: the answer is then a stream of one report per record, in order, written as deliveries
complete (the native NDJSON produce machinery). A report that succeeded has ``error_code`` 200, as
in Confluent's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway import errors, records
from gateway.api.confluent_v3.links import E_503, E_CLUSTER, JSON, ClusterId, Topic, encode, json_response, links_for
from gateway.api.confluent_v3.produce_records import ConcatenatedJson, decode_one, prepare
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.api.errors import error_body, error_response
from gateway.api.produce import DuplexStreamingResponse
from gateway.kafka.delivery import Batch, Outcome, Prepared
from gateway.kafka.metadata import TopicInfo
from gateway.lifespan import Runtime
from gateway.publish import InOrder, Publisher

router = APIRouter(prefix="/v3", tags=["confluent v3"])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _report(cluster_id: str, topic: str, out: Outcome, kv: dict[str, Any]) -> dict[str, Any]:
    if isinstance(out, errors.GatewayError):
        return error_body(out)
    return {
        "error_code": 200,
        "cluster_id": cluster_id,
        "topic_name": topic,
        "partition_id": out.partition,
        "offset": out.offset,
        "timestamp": _iso(out.timestamp),
        **kv,
    }


@router.post(
    "/clusters/{cluster_id}/topics/{topic}/records",
    summary="Confluent v3: produce one record, or a stream of concatenated records",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {"type": "object"},
                    "example": {
                        "partition_id": 0,
                        "headers": [{"name": "source", "value": "d2Vi"}],
                        "key": {"type": "STRING", "data": "user-1"},
                        "value": {"type": "JSON", "data": {"clicked": "buy"}},
                        "timestamp": "2026-11-27T12:00:00Z",
                    },
                }
            },
        }
    },
    responses={
        200: {
            "description": "The delivery report (`error_code` 200). On a chunked request: one report per record, "
            "in order, concatenated; a failed record's report is `{error_code, message}` and the stream goes on.",
            "content": {
                JSON: {
                    "example": {
                        "error_code": 200,
                        "cluster_id": "cluster-1",
                        "topic_name": "orders",
                        "partition_id": 0,
                        "offset": 42,
                        "timestamp": "2026-11-27T12:00:00.000Z",
                        "key": {"type": "STRING", "size": 6},
                        "value": {"type": "JSON", "size": 17},
                    }
                }
            },
        },
        **errs(
            (400, "Malformed JSON (40001)"),
            E_CLUSTER,
            (404, "Unknown topic (40401) or partition (40402)"),
            (413, "Record over the limits (41301)"),
            (415, "Content-Type is not application/json (41501)"),
            (422, "Record breaks the schema (42201)"),
            (429, "Producer queue full (42901)"),
            E_503,
        ),
    },
)
async def produce(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    media = (request.headers.get("content-type") or JSON).split(";", 1)[0].strip().lower()
    if media != JSON:
        raise errors.UnsupportedMediaType(f"Content-Type must be {JSON}; got '{media}'.")
    await links_for(request, rt, cluster_id)
    info = await rt.publisher.topic(topic)
    limits = rt.settings.produce
    max_value = limits.max_record_bytes * 2 + 65536
    if "chunked" in (request.headers.get("transfer-encoding") or "").lower():
        return DuplexStreamingResponse(_stream(request, rt, cluster_id, info, max_value), media_type=JSON)
    body = await request.body()
    if len(body) > limits.max_body_bytes:
        raise errors.PayloadTooLarge(f"Body is over the limit of {limits.max_body_bytes} bytes.")
    texts, error = ConcatenatedJson(max_value).feed(body, final=True)
    if error is not None:
        raise error
    if len(texts) != 1:
        raise errors.BadRequest(
            "Send one record per request, or many on a chunked request (Transfer-Encoding: chunked)."
        )
    rec, kv = prepare(decode_one(texts[0], "record"), limits.max_record_bytes, "record")
    (out,) = await Publisher.outcomes(rt.publisher.submit(info, [rec]))
    if isinstance(out, errors.GatewayError):
        return error_response(out)
    return json_response(_report(cluster_id, info.name, out, kv))


async def _stream(
    request: Request, rt: Runtime, cluster_id: str, info: TopicInfo, max_value: int
) -> AsyncIterator[bytes]:
    """One report per record, in order, written as deliveries complete; bounded in flight.

    As in the native NDJSON produce: a reader task turns each chunk of the body into one producer
    batch while this generator writes reports, so a client that waits for a report before sending
    the next record is served, and at most ``ndjson_window`` records are in flight.
    """
    limits = rt.settings.produce
    window = limits.ndjson_window
    stream: InOrder[list[dict[str, Any]]] = InOrder(window)
    count = 0

    async def submit(texts: list[str]) -> None:
        nonlocal count
        for start in range(0, len(texts), window):
            prepared: list[Prepared] = []
            failed: list[tuple[int, errors.GatewayError]] = []
            kvs: list[dict[str, Any]] = []
            for text in texts[start : start + window]:
                count += 1
                where = f"record {count}"
                try:
                    rec, kv = prepare(decode_one(text, where), limits.max_record_bytes, where)
                except errors.GatewayError as exc:
                    failed.append((len(prepared), exc))
                    rec, kv = records.PLACEHOLDER, {}
                prepared.append(rec)
                kvs.append(kv)
            await stream.wait_for_room()
            try:
                batch = rt.publisher.submit(info, prepared, failed=failed)
            except errors.GatewayError as exc:  # 429/503 before anything of this group was produced
                batch = Batch(info.name, [exc] * len(prepared), None)
            stream.add(batch, kvs, len(kvs))

    async def reader() -> None:
        splitter = ConcatenatedJson(max_value)
        try:
            async for chunk in request.stream():
                texts, error = splitter.feed(chunk)
                await submit(texts)
                if error is not None:
                    raise error
            texts, error = splitter.feed(b"", final=True)
            await submit(texts)
            if error is not None:
                raise error
        except errors.GatewayError as exc:  # a malformed stream: report it, then end
            stream.add(Batch(info.name, [exc], None), [{}], 1)

    async for done in stream.run(reader):
        out = []
        for batch, kvs in done:
            for o, kv in zip(batch.outcomes(), kvs, strict=True):
                out.append(encode(_report(cluster_id, info.name, o, kv)) + b"\n")
        yield b"".join(out)
