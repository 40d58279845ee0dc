"""Admin routes (API.md §4): topics, consumer groups and the cluster.

``GET /topics`` and ``GET /topics/{topic}`` serve both the native API and Confluent REST Proxy v2:
the list is a JSON array of names (v2's shape) and a topic is v2's ``{name, configs, partitions:
[{partition, leader, replicas: [{broker, leader, in_sync}]}]}`` with the native extras added (``isr``,
``earliest_offset``, ``latest_offset`` per partition; ``internal``). A request whose ``Accept`` names
``application/vnd.kafka.v2+json`` gets that Content-Type; every other one gets ``application/json``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import RuntimeDep
from gateway.kafka.admin import Broker, ClusterAdmin, GroupDetail, TopicDetail
from gateway.lifespan import Runtime

router = APIRouter(tags=["admin"])

JSON = "application/json"
V2 = "application/vnd.kafka.v2+json"
# After create/delete, how long to wait for the metadata cache to show the change, so the very next
# produce sees it (KRaft brokers learn of a new topic a few milliseconds after the controller).
METADATA_SETTLE_S = 3.0
METADATA_SETTLE_STEP_S = 0.05
# Topic names as Kafka allows them (also the broker's limit on length).
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"

_encode = msgspec.json.encode
_ERR_SCHEMA = {"schema": {"$ref": "#/components/schemas/Error"}}


def _err(description: str, code: int, message: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {**_ERR_SCHEMA, "example": {"error_code": code, "message": message}}},
    }


_UNAVAILABLE = _err("Kafka unreachable; see Retry-After", 50301, "Kafka did not answer the admin request in time.")
_TOPIC_404 = _err("Unknown topic", 40401, "Topic 'orders' not found.")

TOPIC_EXAMPLE: dict[str, Any] = {
    "name": "orders",
    "internal": False,
    "configs": {"cleanup.policy": "delete", "retention.ms": "604800000"},
    "partitions": [
        {
            "partition": 0,
            "leader": 1,
            "replicas": [
                {"broker": 1, "leader": True, "in_sync": True},
                {"broker": 2, "leader": False, "in_sync": True},
            ],
            "isr": [1, 2],
            "earliest_offset": 0,
            "latest_offset": 42,
        }
    ],
}
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


class NewTopicBody(BaseModel):
    """``POST /topics``: partitions and replication factor default to the broker's defaults."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=TOPIC_NAME_PATTERN, examples=["orders"])]
    partitions: Annotated[int | None, Field(ge=1, le=100_000, examples=[6])] = None
    # librdkafka's own bound for a replication factor.
    replication_factor: Annotated[int | None, Field(ge=1, le=10_000, examples=[3])] = None
    configs: Annotated[
        dict[str, str | int | float | bool], Field(examples=[{"retention.ms": "86400000", "cleanup.policy": "delete"}])
    ] = Field(default_factory=dict)


def _admin(rt: Runtime) -> ClusterAdmin:
    return ClusterAdmin(rt.admin, rt.executor, rt.settings.request_timeout_s)


def _media(accept: str | None) -> str:
    return V2 if accept and V2 in accept.lower() else JSON


def _broker_json(b: Broker | None) -> dict[str, Any] | None:
    return None if b is None else {"id": b.id, "host": b.host, "port": b.port, "rack": b.rack}


def topic_json(t: TopicDetail) -> dict[str, Any]:
    """Confluent v2's topic shape plus the native extras."""
    return {
        "name": t.name,
        "internal": t.internal,
        "configs": t.configs,
        "partitions": [
            {
                "partition": p.partition,
                "leader": p.leader if p.leader is not None else -1,
                "replicas": [{"broker": r, "leader": r == p.leader, "in_sync": r in p.isr} for r in p.replicas],
                "isr": p.isr,
                "earliest_offset": p.earliest_offset,
                "latest_offset": p.latest_offset,
            }
            for p in t.partitions
        ],
    }


def group_json(g: GroupDetail) -> dict[str, Any]:
    return {
        "group_id": g.group_id,
        "state": g.state,
        "type": g.type,
        "simple": g.simple,
        "protocol": g.protocol,
        "coordinator": _broker_json(g.coordinator),
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


async def _settle(rt: Runtime, name: str, present: bool) -> None:
    """Refresh the metadata cache until it shows the topic created (or gone), bounded in time."""
    deadline = time.monotonic() + METADATA_SETTLE_S
    while True:
        await rt.metadata.refresh()
        if (name in rt.metadata.topics) == present or time.monotonic() >= deadline:
            return
        await asyncio.sleep(METADATA_SETTLE_STEP_S)


@router.get(
    "/topics",
    summary="List topic names (also Confluent REST Proxy v2)",
    responses={
        200: {
            "description": "A JSON array of topic names, sorted (internal topics included).",
            "content": {JSON: {"example": ["orders", "payments"]}, V2: {"example": ["orders", "payments"]}},
        },
        503: _UNAVAILABLE,
    },
)
async def list_topics(rt: RuntimeDep, accept: Annotated[str | None, Header()] = None) -> Response:
    names = await _admin(rt).topic_names()
    return Response(_encode(names), media_type=_media(accept))


@router.post(
    "/topics",
    status_code=201,
    summary="Create a topic",
    responses={
        201: {
            "description": "Created; the body is the new topic as GET /topics/{topic} shows it.",
            "content": {JSON: {"example": TOPIC_EXAMPLE}},
        },
        400: _err("Malformed JSON", 40001, "Invalid request: ..."),
        409: _err("The topic exists", 40901, "Topic 'orders' already exists."),
        422: _err(
            "Bad name, config or replication factor; the message carries Kafka's reason",
            42201,
            "Kafka refused the request: Unable to replicate the partition 3 time(s): ...",
        ),
        503: _UNAVAILABLE,
    },
)
async def create_topic(rt: RuntimeDep, body: NewTopicBody) -> Response:
    configs = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in body.configs.items()}
    admin = _admin(rt)
    await admin.create_topic(body.name, body.partitions, body.replication_factor, configs)
    await _settle(rt, body.name, present=True)
    detail = await admin.describe_topic(body.name)
    return Response(
        _encode(topic_json(detail)), status_code=201, media_type=JSON, headers={"Location": f"/topics/{body.name}"}
    )


@router.get(
    "/topics/{topic}",
    summary="Describe a topic: partitions, leaders, replicas, ISR, offsets, configs (also Confluent v2)",
    responses={
        200: {
            "description": "Confluent v2's topic shape plus `internal` and, per partition, `isr`, "
            "`earliest_offset`, `latest_offset`. Content-Type follows Accept (v2 vendor type or JSON).",
            "content": {JSON: {"example": TOPIC_EXAMPLE}, V2: {"example": TOPIC_EXAMPLE}},
        },
        404: _TOPIC_404,
        503: _UNAVAILABLE,
    },
)
async def describe_topic(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249)],
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    detail = await _admin(rt).describe_topic(topic)
    return Response(_encode(topic_json(detail)), media_type=_media(accept))


@router.delete(
    "/topics/{topic}",
    status_code=204,
    summary="Delete a topic",
    responses={204: {"description": "Deleted"}, 404: _TOPIC_404, 503: _UNAVAILABLE},
)
async def delete_topic(rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)]) -> Response:
    await _admin(rt).delete_topic(topic)
    await _settle(rt, topic, present=False)
    return Response(status_code=204)


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
        503: _UNAVAILABLE,
    },
)
async def list_groups(rt: RuntimeDep) -> Response:
    groups = await _admin(rt).list_groups()
    body = [{"group_id": g.group_id, "state": g.state, "type": g.type, "simple": g.simple} for g in groups]
    return Response(_encode(body), media_type=JSON)


@router.get(
    "/consumer-groups/{group}",
    summary="Describe a consumer group: state, members, committed offsets, lag",
    responses={
        200: {
            "description": "Per partition the committed offset, the latest offset and their difference (`lag`; "
            "null where nothing is committed); `total_lag` sums the known lags.",
            "content": {JSON: {"example": GROUP_EXAMPLE}},
        },
        404: _err("Unknown consumer group", 40404, "Consumer group 'billing' not found."),
        503: _UNAVAILABLE,
    },
)
async def describe_group(rt: RuntimeDep, group: Annotated[str, Path(max_length=255)]) -> Response:
    detail = await _admin(rt).describe_group(group)
    rt.metrics.observe_group_lag(detail.group_id, detail.total_lag)
    return Response(_encode(group_json(detail)), media_type=JSON)


@router.get(
    "/cluster",
    summary="Cluster id, brokers and controller",
    responses={
        200: {
            "content": {
                JSON: {
                    "example": {
                        "cluster_id": "b-SVfOWYToGFuItV6WtSrg",
                        "controller": {"id": 1, "host": "kafka-0", "port": 9092, "rack": None},
                        "brokers": [{"id": 1, "host": "kafka-0", "port": 9092, "rack": None}],
                    }
                }
            }
        },
        503: _UNAVAILABLE,
    },
)
async def cluster(rt: RuntimeDep) -> Response:
    info = await _admin(rt).cluster()
    body = {
        "cluster_id": info.cluster_id,
        "controller": _broker_json(info.controller),
        "brokers": [_broker_json(b) for b in info.brokers],
    }
    return Response(_encode(body), media_type=JSON)
