"""Confluent v2 produce: ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/{partition}``.

Produce goes through the native producer machinery (``gateway.records`` + ``Publisher``). Embedded
formats ``binary`` (base64 strings) and ``json``; ``avro``, ``jsonschema`` and ``protobuf`` need a
schema registry and are refused with 415.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway import errors, records
from gateway.api.confluent_v2.docs import E400, E406
from gateway.api.confluent_v2.media import V2, V2_BINARY, V2_JSON, encode, media_of, negotiate_generic, read_body
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.api.errors import error_response, status_and_code
from gateway.kafka.delivery import Outcome
from gateway.lifespan import Runtime
from gateway.publish import Publisher

router = APIRouter(tags=["confluent v2"])


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
    **errs(
        E400,
        (404, "Unknown topic (40401) or partition (40402)"),
        E406,
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


def _produce_formats(content_type: str | None) -> records.Formats:
    media = media_of(content_type)
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
    media = negotiate_generic(request)
    limits = rt.settings.produce
    info = await rt.metadata.partition(topic, partition) if partition is not None else await rt.publisher.topic(topic)
    body = await read_body(request, limits.max_body_bytes)
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
    return Response(encode(answer), media_type=media)


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
