"""Confluent v2 metadata: partitions of a topic (leader, replicas, offsets) and broker ids.

``GET /topics`` and ``GET /topics/{t}`` are served by the admin API (``gateway.api.admin``) in the
same v2 shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway import errors
from gateway.api.admin.client import cluster_admin
from gateway.api.confluent_v2.docs import E406
from gateway.api.confluent_v2.media import V2, negotiate_generic, v2_response
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs

router = APIRouter(tags=["confluent v2"])


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
        **errs((404, "Unknown topic (40401)"), E406),
    },
)
async def list_partitions(request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)]) -> Response:
    negotiate_generic(request)
    await rt.metadata.topic(topic)
    detail = await cluster_admin(rt).describe_topic(topic)
    return v2_response(request, [_partition_json(p) for p in detail.partitions])


@router.get(
    "/topics/{topic}/partitions/{partition}",
    summary="Confluent v2: one partition with leader and replicas",
    responses={
        200: {"content": {V2: {"example": _PARTITION_EXAMPLE}}},
        **errs((404, "Unknown topic (40401) or partition (40402)"), E406),
    },
)
async def get_partition(
    request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)], partition: Annotated[int, Path()]
) -> Response:
    negotiate_generic(request)
    await rt.metadata.partition(topic, partition)
    detail = await cluster_admin(rt).describe_topic(topic)
    for p in detail.partitions:
        if p.partition == partition:
            return v2_response(request, _partition_json(p))
    raise errors.PartitionNotFound(topic, partition)


@router.get(
    "/topics/{topic}/partitions/{partition}/offsets",
    summary="Confluent v2: first and next offsets of a partition",
    responses={
        200: {"content": {V2: {"example": {"beginning_offset": 0, "end_offset": 42}}}},
        **errs((404, "Unknown topic (40401) or partition (40402)"), E406),
    },
)
async def partition_offsets(
    request: Request, rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)], partition: Annotated[int, Path()]
) -> Response:
    negotiate_generic(request)
    await rt.metadata.partition(topic, partition)
    admin = cluster_admin(rt)
    earliest = await admin.list_offsets(topic, [partition], "earliest")
    latest = await admin.list_offsets(topic, [partition], "latest")
    return v2_response(request, {"beginning_offset": earliest.get(partition), "end_offset": latest.get(partition)})


@router.get(
    "/brokers",
    summary="Confluent v2: broker ids",
    responses={200: {"content": {V2: {"example": {"brokers": [1, 2, 3]}}}}, **errs(E406, (503, "Kafka unreachable"))},
)
async def brokers(request: Request, rt: RuntimeDep) -> Response:
    negotiate_generic(request)
    cluster = await cluster_admin(rt).cluster()
    return v2_response(request, {"brokers": [b.id for b in cluster.brokers]})
