"""Confluent REST Proxy API v2 (API.md §3): produce, consumer instances and partition metadata.

Paths, media types, bodies and error codes are the Confluent proxy's, so its clients work unchanged.
Produce goes through the native producer machinery (``gateway.records`` + ``Publisher``); consumer
instances live in ``gateway.consumers``. ``GET /topics`` and ``GET /topics/{t}`` are served by the
admin API in the same v2 shape.

Embedded formats: ``binary`` (base64 strings) and ``json``; ``avro``, ``jsonschema`` and ``protobuf``
need a schema registry and are refused with 415 (produce) or 42204 (consumer creation).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from confluent_kafka import Message
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from gateway import codec, errors, records
from gateway.api.deps import RuntimeDep
from gateway.api.errors import error_response, status_and_code
from gateway.consumers import ConsumerInstance
from gateway.kafka.admin import ClusterAdmin
from gateway.kafka.producer import Outcome
from gateway.lifespan import Runtime
from gateway.publish import Publisher

router = APIRouter(tags=["confluent v2"])

V2 = "application/vnd.kafka.v2+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"
V2_JSON = "application/vnd.kafka.json.v2+json"
EMBEDDED = ("binary", "json", "avro", "jsonschema", "protobuf")
# Types a v2 response without embedded data satisfies (besides the wildcards).
_GENERIC_ACCEPTS = {"application/json", "application/vnd.kafka+json", V2} | {
    f"application/vnd.kafka.{f}.v2+json" for f in EMBEDDED
}
# Bodies of non-produce v2 requests: the Confluent proxy reads them whatever the embedded format.
_GENERIC_CONTENT = _GENERIC_ACCEPTS | {"application/octet-stream", ""}

_encode = msgspec.json.encode


# -- media types ---------------------------------------------------------------------------------


def _media(value: str | None) -> str:
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


def _v2_response(request: Request, content: Any, status: int = 200) -> Response:
    media = negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    return Response(_encode(content), status, media_type=media)


def _no_content(request: Request) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    return Response(status_code=204)


# -- request bodies ------------------------------------------------------------------------------


class JsonRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A v2 record in the json format; a missing value is null, as in the Confluent proxy."""

    # msgspec's Raw cannot sit in a union with None: JSON null arrives as Raw(b"null") instead.
    key: msgspec.Raw = records.NULL
    value: msgspec.Raw = records.NULL
    partition: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # Not part of v2; fixed so the shared ``records.prepare`` reads every record alike.
    headers: None = None
    timestamp: None = None


class BinaryRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A v2 record in the binary format: key and value are base64, decoded by msgspec."""

    key: bytes | None = None
    value: bytes | None = None
    partition: Annotated[int, msgspec.Meta(ge=0)] | None = None
    headers: None = None
    timestamp: None = None


class _Schemas(msgspec.Struct, kw_only=True):
    # Schema fields of the Confluent request; the json and binary formats ignore them.
    key_schema: str | None = None
    value_schema: str | None = None
    key_schema_id: int | None = None
    value_schema_id: int | None = None


class JsonProduceBody(_Schemas, forbid_unknown_fields=True, kw_only=True):
    records: list[JsonRecord]


class BinaryProduceBody(_Schemas, forbid_unknown_fields=True, kw_only=True):
    records: list[BinaryRecord]


class TopicPartitionIn(msgspec.Struct):
    topic: str
    partition: int


class PartitionsBody(msgspec.Struct):
    partitions: list[TopicPartitionIn]


class OffsetIn(msgspec.Struct):
    topic: str
    partition: int
    offset: int
    metadata: str | None = None


class OffsetsBody(msgspec.Struct):
    offsets: list[OffsetIn]


class SubscriptionBody(msgspec.Struct):
    topics: list[str] | None = None
    topic_pattern: str | None = None


async def _body(request: Request, limit: int) -> bytes:
    media = _media(request.headers.get("content-type"))
    if media not in _GENERIC_CONTENT:
        raise errors.UnsupportedMediaType(f"Content-Type must be {V2} (or application/json); got '{media}'.")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise errors.PayloadTooLarge(f"Body of {length} bytes is over the limit of {limit} bytes.")
    body = await request.body()
    if len(body) > limit:
        raise errors.PayloadTooLarge(f"Body is over the limit of {limit} bytes.")
    return body


# -- OpenAPI -------------------------------------------------------------------------------------

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errs(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": text, **_ERR} for status, text in codes}


_E404_INSTANCE = (404, "Consumer instance not found (40403): deleted, expired, or owned by another process")
_E406 = (406, "No acceptable response type (40601)")
_E400 = (400, "Malformed JSON (40001)")
_E415 = (415, "Unsupported Content-Type (41501)")
_E422 = (422, "Body breaks the schema (42201)")

PRODUCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every record's partition and offset, in request order; a record that failed has "
        "`partition` and `offset` null and its own `error_code` (50002 Kafka error, 50003 retriable) and `error`.",
        "content": {
            V2: {
                "example": {
                    "key_schema_id": None,
                    "value_schema_id": None,
                    "offsets": [
                        {"partition": 0, "offset": 42, "error_code": None, "error": None},
                        {"partition": None, "offset": None, "error_code": 50003, "error": "Delivery timed out."},
                    ],
                }
            }
        },
    },
    **_errs(
        _E400,
        (404, "Unknown topic (40401) or partition (40402)"),
        _E406,
        (413, "Body or record over the limits (41301)"),
        (415, "Content-Type is not application/vnd.kafka.{json,binary}.v2+json (41501)"),
        (422, "Well-formed JSON that breaks the schema, e.g. a binary value that is not base64 (42201)"),
        (429, "Producer queue full (42901); see Retry-After"),
        (503, "Every record failed because Kafka is unreachable (50301); see Retry-After"),
    ),
}

PRODUCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            V2_JSON: {
                "schema": {"type": "object", "required": ["records"]},
                "example": {"records": [{"key": "somekey", "value": {"foo": "bar"}}, {"value": 53.5, "partition": 1}]},
            },
            V2_BINARY: {
                "schema": {"type": "object", "required": ["records"]},
                "example": {"records": [{"key": "a2V5", "value": "Y29uZmx1ZW50"}]},
            },
        },
    }
}


def _json_body(example: Any) -> dict[str, Any]:
    return {"requestBody": {"content": {V2: {"schema": {"type": "object"}, "example": example}}}}


# -- produce -------------------------------------------------------------------------------------


def _produce_formats(content_type: str | None) -> records.Formats:
    media = _media(content_type)
    if media == V2_BINARY:
        return records.Formats(key="binary", value="binary")
    if media == V2_JSON:
        # The Confluent json format writes the key as JSON too ("k" is stored with its quotes).
        return records.Formats(key="json", value="json")
    for fmt in ("avro", "jsonschema", "protobuf"):
        if media == f"application/vnd.kafka.{fmt}.v2+json":
            raise errors.UnsupportedMediaType(
                f"The {fmt} embedded format needs a schema registry, which this gateway does not support; "
                f"use {V2_JSON} or {V2_BINARY}."
            )
    raise errors.UnsupportedMediaType(f"Content-Type must be {V2_JSON} or {V2_BINARY}; got '{media or 'none'}'.")


def _offset_entry(out: Outcome) -> dict[str, Any]:
    if isinstance(out, errors.GatewayError):
        status, code = status_and_code(out)
        if isinstance(out, errors.RetryLater):
            code = 50003  # Confluent: retriable Kafka error
        elif status >= 500:
            code = 50002  # Confluent: Kafka error
        return {"partition": None, "offset": None, "error_code": code, "error": out.message}
    return {"partition": out.partition, "offset": out.offset, "error_code": None, "error": None}


async def _produce(request: Request, rt: Runtime, topic: str, partition: int | None) -> Response:
    formats = _produce_formats(request.headers.get("content-type"))
    media = negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    limits = rt.settings.produce
    info = await rt.metadata.partition(topic, partition) if partition is not None else await rt.publisher.topic(topic)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
        raise errors.PayloadTooLarge(f"Body of {length} bytes is over the limit of {limits.max_body_bytes} bytes.")
    body = await request.body()
    if len(body) > limits.max_body_bytes:
        raise errors.PayloadTooLarge(f"Body is over the limit of {limits.max_body_bytes} bytes.")
    parsed = records.decode_request(body, BinaryProduceBody if formats.value == "binary" else JsonProduceBody)
    if not parsed.records:
        raise errors.InvalidRecord("records may not be empty.")
    if len(parsed.records) > limits.max_batch_records:
        raise errors.PayloadTooLarge(
            f"Batch of {len(parsed.records)} records is over the limit of {limits.max_batch_records}."
        )
    prepared = records.prepare(parsed.records, formats, limits.max_record_bytes)
    if partition is not None:
        prepared = [(v, k, h, partition, ts, size) for v, k, h, _, ts, size in prepared]
    outcomes = await Publisher.outcomes(rt.publisher.submit(info, prepared))
    failed = [o for o in outcomes if isinstance(o, errors.GatewayError)]
    if failed and len(failed) == len(outcomes) and len({status_and_code(e) for e in failed}) == 1:
        # Nothing was written, for one reason: say so with a real status instead of a 200.
        return error_response(failed[0])
    answer = {"key_schema_id": None, "value_schema_id": None, "offsets": [_offset_entry(o) for o in outcomes]}
    return Response(_encode(answer), media_type=media)


@router.post(
    "/topics/{topic}",
    summary="Confluent v2: produce records to a topic",
    openapi_extra=PRODUCE_BODY,
    responses=PRODUCE_RESPONSES,
)
async def produce_to_topic(request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)]) -> Response:
    return await _produce(request, rt, topic, None)


@router.post(
    "/topics/{topic}/partitions/{partition}",
    summary="Confluent v2: produce records to one partition",
    openapi_extra=PRODUCE_BODY,
    responses=PRODUCE_RESPONSES,
)
async def produce_to_partition(
    request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)], partition: Annotated[int, Path(ge=0)]
) -> Response:
    return await _produce(request, rt, topic, partition)


# -- metadata ------------------------------------------------------------------------------------


def cluster_admin(rt: Runtime) -> ClusterAdmin:
    return ClusterAdmin(rt.admin, rt.executor, rt.settings.request_timeout_s)


def _partition_json(p: Any) -> dict[str, Any]:
    isr = set(p.isr)
    return {
        "partition": p.partition,
        "leader": p.leader if p.leader is not None else -1,
        "replicas": [{"broker": b, "leader": b == p.leader, "in_sync": b in isr} for b in p.replicas],
    }


_PARTITION_EXAMPLE = {
    "partition": 0,
    "leader": 1,
    "replicas": [{"broker": 1, "leader": True, "in_sync": True}, {"broker": 2, "leader": False, "in_sync": True}],
}


@router.get(
    "/topics/{topic}/partitions",
    summary="Confluent v2: partitions of a topic with leader and replicas",
    responses={
        200: {"content": {V2: {"example": [_PARTITION_EXAMPLE]}}},
        **_errs((404, "Unknown topic (40401)"), _E406),
    },
)
async def list_partitions(request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)]) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    await rt.metadata.topic(topic)
    detail = await cluster_admin(rt).describe_topic(topic)
    return _v2_response(request, [_partition_json(p) for p in detail.partitions])


@router.get(
    "/topics/{topic}/partitions/{partition}",
    summary="Confluent v2: one partition with leader and replicas",
    responses={
        200: {"content": {V2: {"example": _PARTITION_EXAMPLE}}},
        **_errs((404, "Unknown topic (40401) or partition (40402)"), _E406),
    },
)
async def get_partition(
    request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)], partition: Annotated[int, Path()]
) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    await rt.metadata.partition(topic, partition)
    detail = await cluster_admin(rt).describe_topic(topic)
    for p in detail.partitions:
        if p.partition == partition:
            return _v2_response(request, _partition_json(p))
    raise errors.PartitionNotFound(topic, partition)


@router.get(
    "/topics/{topic}/partitions/{partition}/offsets",
    summary="Confluent v2: first and next offsets of a partition",
    responses={
        200: {"content": {V2: {"example": {"beginning_offset": 0, "end_offset": 42}}}},
        **_errs((404, "Unknown topic (40401) or partition (40402)"), _E406),
    },
)
async def partition_offsets(
    request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)], partition: Annotated[int, Path()]
) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    await rt.metadata.partition(topic, partition)
    admin = cluster_admin(rt)
    earliest = await admin.list_offsets(topic, [partition], "earliest")
    latest = await admin.list_offsets(topic, [partition], "latest")
    return _v2_response(request, {"beginning_offset": earliest.get(partition), "end_offset": latest.get(partition)})


@router.get(
    "/brokers",
    summary="Confluent v2: broker ids",
    responses={200: {"content": {V2: {"example": {"brokers": [1, 2, 3]}}}}, **_errs(_E406, (503, "Kafka unreachable"))},
)
async def brokers(request: Request, rt: RuntimeDep) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    cluster = await cluster_admin(rt).cluster()
    return _v2_response(request, {"brokers": [b.id for b in cluster.brokers]})


# -- consumer instances --------------------------------------------------------------------------

Group = Annotated[str, Path(description="Consumer group", max_length=255)]
Instance = Annotated[str, Path(description="Consumer instance name", max_length=255)]
MAX_CONTROL_BODY = 1024 * 1024


def base_uri(request: Request, rt: Runtime, group: str, name: str) -> str:
    """Absolute URL of the instance on this very process (advertised URL behind a load balancer)."""
    base = (rt.settings.advertised_url or str(request.base_url)).rstrip("/")
    return f"{base}/consumers/{quote(group, safe='')}/instances/{quote(name, safe='')}"


@router.post(
    "/consumers/{group}",
    summary="Confluent v2: create a consumer instance in a group",
    openapi_extra=_json_body({"name": "my_consumer", "format": "binary", "auto.offset.reset": "earliest"}),
    responses={
        200: {
            "description": "The instance; `base_uri` is absolute and names this process.",
            "content": {
                V2: {
                    "example": {
                        "instance_id": "my_consumer",
                        "base_uri": "http://gw-0.example:8080/consumers/testgroup/instances/my_consumer",
                    }
                }
            },
        },
        **_errs(
            _E400,
            _E406,
            (409, "An instance of that name already exists in the group (40902)"),
            _E415,
            (422, "Invalid consumer configuration (42204)"),
            (429, "Too many consumer instances on this process (42901)"),
        ),
    },
)
async def create_consumer(request: Request, rt: RuntimeDep, group: Group) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    raw = await _body(request, MAX_CONTROL_BODY)
    body: dict[str, Any] = records.decode_request(raw, dict[str, Any]) if raw.strip() else {}
    instance = await rt.consumers.create(group, body)
    return _v2_response(
        request, {"instance_id": instance.name, "base_uri": base_uri(request, rt, group, instance.name)}
    )


def _instance(rt: Runtime, group: str, name: str) -> ConsumerInstance:
    return rt.consumers.get(group, name)


@router.delete(
    "/consumers/{group}/instances/{instance}",
    summary="Confluent v2: delete a consumer instance (leaves the group)",
    status_code=204,
    responses=_errs(_E404_INSTANCE, _E406),
)
async def delete_consumer(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    negotiate(request.headers.get("accept"), _GENERIC_ACCEPTS, V2)
    await rt.consumers.delete(group, instance)
    return Response(status_code=204)


@router.post(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: subscribe to topics or a topic pattern",
    status_code=204,
    openapi_extra=_json_body({"topics": ["test1", "test2"]}),
    responses=_errs(
        _E400, _E404_INSTANCE, _E406, (409, "Instance has manually assigned partitions (40903)"), _E415, _E422
    ),
)
async def subscribe(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    body: SubscriptionBody = records.decode_request(await _body(request, MAX_CONTROL_BODY), SubscriptionBody)
    await inst.subscribe(body.topics, body.topic_pattern)
    return _no_content(request)


@router.get(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: subscribed topics",
    responses={200: {"content": {V2: {"example": {"topics": ["test1", "test2"]}}}}, **_errs(_E404_INSTANCE, _E406)},
)
async def subscription(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    return _v2_response(request, {"topics": await inst.subscription()})


@router.delete(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: unsubscribe",
    status_code=204,
    responses=_errs(_E404_INSTANCE, _E406),
)
async def unsubscribe(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    await inst.unsubscribe()
    return _no_content(request)


_PARTITIONS_EXAMPLE = {"partitions": [{"topic": "test", "partition": 0}, {"topic": "test", "partition": 1}]}


@router.post(
    "/consumers/{group}/instances/{instance}/assignments",
    summary="Confluent v2: assign partitions manually",
    status_code=204,
    openapi_extra=_json_body(_PARTITIONS_EXAMPLE),
    responses=_errs(_E400, _E404_INSTANCE, _E406, (409, "Instance is subscribed (40903)"), _E415, _E422),
)
async def assign(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    body: PartitionsBody = records.decode_request(await _body(request, MAX_CONTROL_BODY), PartitionsBody)
    await inst.assign([(p.topic, p.partition) for p in body.partitions])
    return _no_content(request)


@router.get(
    "/consumers/{group}/instances/{instance}/assignments",
    summary="Confluent v2: partitions assigned to the instance",
    responses={200: {"content": {V2: {"example": _PARTITIONS_EXAMPLE}}}, **_errs(_E404_INSTANCE, _E406)},
)
async def assignments(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    parts = await inst.assignment()
    return _v2_response(request, {"partitions": [{"topic": t, "partition": p} for t, p in parts]})


_OFFSETS_EXAMPLE = {"offsets": [{"topic": "test", "partition": 0, "offset": 20}]}
_SEEK_ERRORS = _errs(
    _E400, _E404_INSTANCE, _E406, (409, "A partition is not assigned to the instance (40903)"), _E415, _E422
)


@router.post(
    "/consumers/{group}/instances/{instance}/positions",
    summary="Confluent v2: seek partitions to offsets",
    status_code=204,
    openapi_extra=_json_body(_OFFSETS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    body: OffsetsBody = records.decode_request(await _body(request, MAX_CONTROL_BODY), OffsetsBody)
    if any(o.offset < 0 for o in body.offsets):
        raise errors.InvalidRecord("Offsets must be 0 or more.")
    await inst.seek((o.topic, o.partition, o.offset) for o in body.offsets)
    return _no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/positions/beginning",
    summary="Confluent v2: seek partitions to their first offset",
    status_code=204,
    openapi_extra=_json_body(_PARTITIONS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek_beginning(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    body: PartitionsBody = records.decode_request(await _body(request, MAX_CONTROL_BODY), PartitionsBody)
    await inst.seek_to([(p.topic, p.partition) for p in body.partitions], end=False)
    return _no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/positions/end",
    summary="Confluent v2: seek partitions to their end",
    status_code=204,
    openapi_extra=_json_body(_PARTITIONS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek_end(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    body: PartitionsBody = records.decode_request(await _body(request, MAX_CONTROL_BODY), PartitionsBody)
    await inst.seek_to([(p.topic, p.partition) for p in body.partitions], end=True)
    return _no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/offsets",
    summary="Confluent v2: commit offsets (without a body: every record returned so far)",
    openapi_extra=_json_body(_OFFSETS_EXAMPLE),
    responses={
        200: {
            "description": "Committed. As in the Confluent proxy, `offset` is the last record processed: the "
            "group resumes at `offset + 1`.",
            "content": {V2: {"example": []}},
        },
        **_errs(_E400, _E404_INSTANCE, _E406, _E415, _E422, (503, "Kafka did not accept the commit (50301)")),
    },
)
async def commit(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    raw = await _body(request, MAX_CONTROL_BODY)
    if raw.strip():
        body: OffsetsBody = records.decode_request(raw, OffsetsBody)
        await inst.commit([(o.topic, o.partition, o.offset, o.metadata) for o in body.offsets])
    else:
        await inst.commit(None)
    return _v2_response(request, [])


@router.get(
    "/consumers/{group}/instances/{instance}/offsets",
    summary="Confluent v2: last committed offsets of partitions (body: {partitions: [...]})",
    responses={
        200: {
            "description": "Committed offsets (the next record to read); partitions without one are left out. "
            "Without a body: the instance's assigned partitions.",
            "content": {
                V2: {"example": {"offsets": [{"topic": "test", "partition": 0, "offset": 21, "metadata": ""}]}}
            },
        },
        **_errs(_E400, _E404_INSTANCE, _E406, _E422),
    },
)
async def committed(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = _instance(rt, group, instance)
    raw = await _body(request, MAX_CONTROL_BODY)
    wanted = None
    if raw.strip():
        body: PartitionsBody = records.decode_request(raw, PartitionsBody)
        wanted = [(p.topic, p.partition) for p in body.partitions]
    found = await inst.committed(wanted)
    return _v2_response(
        request, {"offsets": [{"topic": t, "partition": p, "offset": o, "metadata": m} for t, p, o, m in found]}
    )


def _record_json(msg: Message, fmt: codec.Format) -> bytes:
    def part(data: bytes | None) -> bytes:
        try:
            return codec.decode(data, fmt)
        except codec.DecodeFailure:
            # Not JSON: rather than fail every fetch on one record (the Confluent proxy answers 500
            # forever), hand it over as a JSON string of its text.
            return _encode((data or b"").decode("utf-8", "replace"))

    return b"".join(
        (
            b'{"topic":',
            _encode(msg.topic()),
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
        **_errs(
            (400, "Bad query parameter (40001)"),
            _E404_INSTANCE,
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
    inst = _instance(rt, group, instance)
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
