"""Confluent v3 consumer groups: list, describe, per-partition lags and the lag summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway.api.admin.client import cluster_admin
from gateway.api.confluent_v3.links import E_503, E_CLUSTER, JSON, ClusterId, Links, json_response, links_for
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.kafka.admin import GroupDetail

router = APIRouter(prefix="/v3", tags=["confluent v3"])

Group = Annotated[str, Path(max_length=255)]


def _state(state: str) -> str:
    # Confluent spells states in capitals ("STABLE", "PREPARING_REBALANCE").
    out = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(state))
    return out.upper()


def _group_json(
    links: Links, g: GroupDetail | Any, assignor: str = "", coordinator: int | None = None
) -> dict[str, Any]:
    gid = g.group_id
    return {
        "kind": "KafkaConsumerGroup",
        "metadata": links.meta("consumer-groups", gid, crn=f"/consumer-group={gid}"),
        "cluster_id": links.cluster_id,
        "consumer_group_id": gid,
        "is_simple": g.simple,
        "partition_assignor": assignor,
        "state": _state(g.state),
        "type": g.type.upper(),
        "coordinator": links.related("brokers", str(coordinator)) if coordinator is not None else None,
        "consumers": links.related("consumer-groups", gid, "consumers"),
        "lag_summary": links.related("consumer-groups", gid, "lag-summary"),
    }


_GROUP_EXAMPLE = {
    "kind": "KafkaConsumerGroup",
    "cluster_id": "cluster-1",
    "consumer_group_id": "billing",
    "is_simple": False,
    "partition_assignor": "range",
    "state": "STABLE",
    "type": "CLASSIC",
}


@router.get(
    "/clusters/{cluster_id}/consumer-groups",
    summary="Confluent v3: list consumer groups",
    responses={
        200: {"content": {JSON: {"example": {"kind": "KafkaConsumerGroupList", "data": [_GROUP_EXAMPLE]}}}},
        **errs(E_CLUSTER, E_503),
    },
)
async def list_groups(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await links_for(request, rt, cluster_id)
    groups = await cluster_admin(rt).list_groups()
    return json_response(
        links.listing("KafkaConsumerGroupList", [_group_json(links, g) for g in groups], "consumer-groups")
    )


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}",
    summary="Confluent v3: one consumer group",
    responses={
        200: {"content": {JSON: {"example": _GROUP_EXAMPLE}}},
        **errs(E_CLUSTER, (404, "Unknown group (40404)"), E_503),
    },
)
async def get_group(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await links_for(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    return json_response(_group_json(links, g, g.protocol, g.coordinator.id if g.coordinator else None))


def _lags(links: Links, g: GroupDetail) -> list[dict[str, Any]]:
    owner = {tp: m for m in g.members for tp in m.assignment}
    out = []
    for o in g.offsets:
        m = owner.get((o.topic, o.partition))
        out.append(
            {
                "kind": "KafkaConsumerLag",
                "metadata": links.meta(
                    "consumer-groups",
                    g.group_id,
                    "lags",
                    o.topic,
                    "partitions",
                    str(o.partition),
                    crn=f"/consumer-group={g.group_id}/lag={o.topic}/partition={o.partition}",
                ),
                "cluster_id": links.cluster_id,
                "consumer_group_id": g.group_id,
                "topic_name": o.topic,
                "partition_id": o.partition,
                "current_offset": o.committed_offset if o.committed_offset is not None else -1,
                "log_end_offset": o.latest_offset if o.latest_offset is not None else -1,
                "lag": o.lag if o.lag is not None else 0,
                "consumer_id": m.member_id if m else "",
                "instance_id": m.group_instance_id if m else None,
                "client_id": m.client_id if m else "",
            }
        )
    return out


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}/lags",
    summary="Confluent v3: lag of every partition the group reads",
    responses={
        200: {
            "content": {
                JSON: {
                    "example": {
                        "kind": "KafkaConsumerLagList",
                        "data": [
                            {
                                "consumer_group_id": "billing",
                                "topic_name": "orders",
                                "partition_id": 0,
                                "current_offset": 40,
                                "log_end_offset": 42,
                                "lag": 2,
                                "consumer_id": "rdkafka-1b2c",
                            }
                        ],
                    }
                }
            }
        },
        **errs(E_CLUSTER, (404, "Unknown group (40404)"), E_503),
    },
)
async def group_lags(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await links_for(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    return json_response(links.listing("KafkaConsumerLagList", _lags(links, g), "consumer-groups", group, "lags"))


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}/lag-summary",
    summary="Confluent v3: total and largest lag of a group",
    responses={
        200: {
            "content": {
                JSON: {
                    "example": {
                        "kind": "KafkaConsumerGroupLagSummary",
                        "consumer_group_id": "billing",
                        "max_lag_topic_name": "orders",
                        "max_lag_partition_id": 0,
                        "max_lag": 2,
                        "total_lag": 3,
                    }
                }
            }
        },
        **errs(E_CLUSTER, (404, "Unknown group (40404)"), E_503),
    },
)
async def group_lag_summary(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await links_for(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    lags = _lags(links, g)
    top = max(lags, key=lambda x: x["lag"], default=None)
    summary: dict[str, Any] = {
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": links.meta("consumer-groups", group, "lag-summary", crn=f"/consumer-group={group}/lag-summary"),
        "cluster_id": links.cluster_id,
        "consumer_group_id": group,
        "max_lag_consumer_id": top["consumer_id"] if top else "",
        "max_lag_instance_id": top["instance_id"] if top else None,
        "max_lag_client_id": top["client_id"] if top else "",
        "max_lag_topic_name": top["topic_name"] if top else "",
        "max_lag_partition_id": top["partition_id"] if top else 0,
        "max_lag": top["lag"] if top else 0,
        "total_lag": sum(x["lag"] for x in lags),
    }
    if top:
        summary["max_lag_partition"] = links.related(
            "topics", top["topic_name"], "partitions", str(top["partition_id"])
        )
    return json_response(summary)
