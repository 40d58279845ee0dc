"""Confluent v2 consumer instances: create and delete, subscription, assignment, positions, offsets.

The instances live in ``gateway.consumers``; fetching their records is ``fetch``. An instance
belongs to the process that created it: ``base_uri`` names that process.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway import errors, records
from gateway.api.confluent_v2.docs import E400, E404_INSTANCE, E406, E415, E422, json_body
from gateway.api.confluent_v2.media import V2, control_body, negotiate_generic, no_content, v2_response
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.consumers import ConsumerInstance
from gateway.lifespan import Runtime

router = APIRouter(tags=["confluent v2"])

Group = Annotated[str, Path(description="Consumer group", max_length=255)]
Instance = Annotated[str, Path(description="Consumer instance name", max_length=255)]
MAX_CONTROL_BODY = 1024 * 1024


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


def base_uri(request: Request, rt: Runtime, group: str, name: str) -> str:
    """Absolute URL of the instance on this very process (advertised URL behind a load balancer)."""
    base = (rt.settings.advertised_url or str(request.base_url)).rstrip("/")
    return f"{base}/consumers/{quote(group, safe='')}/instances/{quote(name, safe='')}"


def instance_of(rt: Runtime, group: str, name: str) -> ConsumerInstance:
    return rt.consumers.get(group, name)


async def _partitions(request: Request) -> list[tuple[str, int]]:
    body: PartitionsBody = records.decode_request(await control_body(request, MAX_CONTROL_BODY), PartitionsBody)
    return [(p.topic, p.partition) for p in body.partitions]


@router.post(
    "/consumers/{group}",
    summary="Confluent v2: create a consumer instance in a group",
    description="With authentication on, the group must match the caller's `group:` scopes if it has any "
    "(403 otherwise); the instance is then the creator's alone.",
    openapi_extra=json_body({"name": "my_consumer", "format": "binary", "auto.offset.reset": "earliest"}),
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
        **errs(
            E400,
            E406,
            (409, "An instance of that name already exists in the group (40902)"),
            E415,
            (422, "Invalid consumer configuration (42204)"),
            (429, "Too many consumer instances on this process (42901)"),
        ),
    },
)
async def create_consumer(request: Request, rt: RuntimeDep, group: Group) -> Response:
    negotiate_generic(request)
    raw = await control_body(request, MAX_CONTROL_BODY)
    body: dict[str, Any] = records.decode_request(raw, dict[str, Any]) if raw.strip() else {}
    instance = await rt.consumers.create(group, body)
    return v2_response(request, {"instance_id": instance.name, "base_uri": base_uri(request, rt, group, instance.name)})


@router.delete(
    "/consumers/{group}/instances/{instance}",
    summary="Confluent v2: delete a consumer instance (leaves the group)",
    status_code=204,
    responses=errs(E404_INSTANCE, E406),
)
async def delete_consumer(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    negotiate_generic(request)
    await rt.consumers.delete(group, instance)
    return Response(status_code=204)


@router.post(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: subscribe to topics or a topic pattern",
    status_code=204,
    openapi_extra=json_body({"topics": ["test1", "test2"]}),
    responses=errs(E400, E404_INSTANCE, E406, (409, "Instance has manually assigned partitions (40903)"), E415, E422),
)
async def subscribe(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    body: SubscriptionBody = records.decode_request(await control_body(request, MAX_CONTROL_BODY), SubscriptionBody)
    await inst.subscribe(body.topics, body.topic_pattern)
    return no_content(request)


@router.get(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: subscribed topics",
    responses={200: {"content": {V2: {"example": {"topics": ["test1", "test2"]}}}}, **errs(E404_INSTANCE, E406)},
)
async def subscription(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    return v2_response(request, {"topics": await inst.subscription()})


@router.delete(
    "/consumers/{group}/instances/{instance}/subscription",
    summary="Confluent v2: unsubscribe",
    status_code=204,
    responses=errs(E404_INSTANCE, E406),
)
async def unsubscribe(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    await inst.unsubscribe()
    return no_content(request)


_PARTITIONS_EXAMPLE = {"partitions": [{"topic": "test", "partition": 0}, {"topic": "test", "partition": 1}]}


@router.post(
    "/consumers/{group}/instances/{instance}/assignments",
    summary="Confluent v2: assign partitions manually",
    status_code=204,
    openapi_extra=json_body(_PARTITIONS_EXAMPLE),
    responses=errs(E400, E404_INSTANCE, E406, (409, "Instance is subscribed (40903)"), E415, E422),
)
async def assign(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    await inst.assign(await _partitions(request))
    return no_content(request)


@router.get(
    "/consumers/{group}/instances/{instance}/assignments",
    summary="Confluent v2: partitions assigned to the instance",
    responses={200: {"content": {V2: {"example": _PARTITIONS_EXAMPLE}}}, **errs(E404_INSTANCE, E406)},
)
async def assignments(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    parts = await inst.assignment()
    return v2_response(request, {"partitions": [{"topic": t, "partition": p} for t, p in parts]})


_OFFSETS_EXAMPLE = {"offsets": [{"topic": "test", "partition": 0, "offset": 20}]}
_SEEK_ERRORS = errs(E400, E404_INSTANCE, E406, (409, "A partition is not assigned to the instance (40903)"), E415, E422)


@router.post(
    "/consumers/{group}/instances/{instance}/positions",
    summary="Confluent v2: seek partitions to offsets",
    status_code=204,
    openapi_extra=json_body(_OFFSETS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    body: OffsetsBody = records.decode_request(await control_body(request, MAX_CONTROL_BODY), OffsetsBody)
    if any(o.offset < 0 for o in body.offsets):
        raise errors.InvalidRecord("Offsets must be 0 or more.")
    await inst.seek((o.topic, o.partition, o.offset) for o in body.offsets)
    return no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/positions/beginning",
    summary="Confluent v2: seek partitions to their first offset",
    status_code=204,
    openapi_extra=json_body(_PARTITIONS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek_beginning(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    await inst.seek_to(await _partitions(request), end=False)
    return no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/positions/end",
    summary="Confluent v2: seek partitions to their end",
    status_code=204,
    openapi_extra=json_body(_PARTITIONS_EXAMPLE),
    responses=_SEEK_ERRORS,
)
async def seek_end(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    await inst.seek_to(await _partitions(request), end=True)
    return no_content(request)


@router.post(
    "/consumers/{group}/instances/{instance}/offsets",
    summary="Confluent v2: commit offsets (without a body: every record returned so far)",
    openapi_extra=json_body(_OFFSETS_EXAMPLE),
    responses={
        200: {
            "description": "Committed. As in the Confluent proxy, `offset` is the last record processed: the "
            "group resumes at `offset + 1`.",
            "content": {V2: {"example": []}},
        },
        **errs(E400, E404_INSTANCE, E406, E415, E422, (503, "Kafka did not accept the commit (50301)")),
    },
)
async def commit(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    raw = await control_body(request, MAX_CONTROL_BODY)
    if raw.strip():
        body: OffsetsBody = records.decode_request(raw, OffsetsBody)
        await inst.commit([(o.topic, o.partition, o.offset, o.metadata) for o in body.offsets])
    else:
        await inst.commit(None)
    return v2_response(request, [])


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
        **errs(E400, E404_INSTANCE, E406, E422),
    },
)
async def committed(request: Request, rt: RuntimeDep, group: Group, instance: Instance) -> Response:
    inst = instance_of(rt, group, instance)
    raw = await control_body(request, MAX_CONTROL_BODY)
    wanted = None
    if raw.strip():
        body: PartitionsBody = records.decode_request(raw, PartitionsBody)
        wanted = [(p.topic, p.partition) for p in body.partitions]
    found = await inst.committed(wanted)
    return v2_response(
        request, {"offsets": [{"topic": t, "partition": p, "offset": o, "metadata": m} for t, p, o, m in found]}
    )
