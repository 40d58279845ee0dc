"""Consumer-group routes: the list, and one group's members, committed offsets and lag."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from gateway.api.admin.client import cluster_admin
from gateway.api.admin.cluster import broker_json
from gateway.api.admin.responses import JSON, UNAVAILABLE, encode, err
from gateway.api.deps import RuntimeDep
from gateway.kafka.admin import GroupDetail

router = APIRouter(tags=["admin"])

GROUP_EXAMPLE: dict[str, Any] = {
    "group_id": "billing",
    "state": "Stable",
    "type": "classic",
    "simple": False,
    "protocol": "range",
    "coordinator": {"id": 1, "host": "kafka-0", "port": 9092, "rack": None},
    "members": [
        {
            "member_id": "rdkafka-1b2c",
            "client_id": "billing-1",
            "host": "/10.0.0.7",
            "group_instance_id": None,
            "assignment": [{"topic": "orders", "partition": 0}],
        }
    ],
    "offsets": [{"topic": "orders", "partition": 0, "committed_offset": 40, "latest_offset": 42, "lag": 2}],
    "total_lag": 2,
}


def group_json(g: GroupDetail) -> dict[str, Any]:
    return {
        "group_id": g.group_id,
        "state": g.state,
        "type": g.type,
        "simple": g.simple,
        "protocol": g.protocol,
        "coordinator": broker_json(g.coordinator),
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "group_instance_id": m.group_instance_id,
                "assignment": [{"topic": t, "partition": p} for t, p in m.assignment],
            }
            for m in g.members
        ],
        "offsets": [
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": o.committed_offset,
                "latest_offset": o.latest_offset,
                "lag": o.lag,
            }
            for o in g.offsets
        ],
        "total_lag": g.total_lag,
    }


@router.get(
    "/consumer-groups",
    summary="List consumer groups",
    responses={
        200: {
            "description": "Every group the cluster knows, sorted by id.",
            "content": {
                JSON: {"example": [{"group_id": "billing", "state": "Stable", "type": "classic", "simple": False}]}
            },
        },
        503: UNAVAILABLE,
    },
)
async def list_groups(rt: RuntimeDep) -> Response:
    groups = await cluster_admin(rt).list_groups()
    body = [{"group_id": g.group_id, "state": g.state, "type": g.type, "simple": g.simple} for g in groups]
    return Response(encode(body), media_type=JSON)


@router.get(
    "/consumer-groups/{group}",
    summary="Describe a consumer group: state, members, committed offsets, lag",
    responses={
        200: {
            "description": "Per partition the committed offset, the latest offset and their difference (`lag`; "
            "null where nothing is committed); `total_lag` sums the known lags.",
            "content": {JSON: {"example": GROUP_EXAMPLE}},
        },
        404: err("Unknown consumer group", 40404, "Consumer group 'billing' not found."),
        503: UNAVAILABLE,
    },
)
async def describe_group(rt: RuntimeDep, group: Annotated[str, Path(max_length=255)]) -> Response:
    detail = await cluster_admin(rt).describe_group(group)
    rt.metrics.observe_group_lag(detail.group_id, detail.total_lag)
    return Response(encode(group_json(detail)), media_type=JSON)
