"""Topic routes: list, create, describe and delete (also Confluent REST Proxy v2's list and describe)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.admin.client import cluster_admin
from gateway.api.admin.responses import JSON, UNAVAILABLE, V2, encode, err, media
from gateway.api.deps import RuntimeDep
from gateway.auth.principals import principal_of
from gateway.kafka.admin import TOPIC_NAME_PATTERN, TopicDetail
from gateway.lifespan import Runtime

router = APIRouter(tags=["admin"])


_TOPIC_404 = err("Unknown topic", 40401, "Topic 'orders' not found.")

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


async def settle_topic(rt: Runtime, name: str, present: bool) -> None:
    """Refresh the metadata cache until it shows the topic created (or gone), bounded in time."""
    await rt.metadata.settle(name, present)


@router.get(
    "/topics",
    summary="List topic names (also Confluent REST Proxy v2)",
    responses={
        200: {
            "description": "A JSON array of topic names, sorted (internal topics included): the topics the "
            "caller may read or write, every topic with the admin scope (or with authentication off).",
            "content": {JSON: {"example": ["orders", "payments"]}, V2: {"example": ["orders", "payments"]}},
        },
        503: UNAVAILABLE,
    },
)
async def list_topics(request: Request, rt: RuntimeDep, accept: Annotated[str | None, Header()] = None) -> Response:
    scopes = principal_of(request).scopes
    names = [name for name in await cluster_admin(rt).topic_names() if scopes.can_see(name)]
    return Response(encode(names), media_type=media(accept))


@router.post(
    "/topics",
    status_code=201,
    summary="Create a topic",
    responses={
        201: {
            "description": "Created; the body is the new topic as GET /topics/{topic} shows it.",
            "content": {JSON: {"example": TOPIC_EXAMPLE}},
        },
        400: err("Malformed JSON", 40001, "Invalid request: ..."),
        409: err("The topic exists", 40901, "Topic 'orders' already exists."),
        422: err(
            "Bad name, config or replication factor; the message carries Kafka's reason",
            42201,
            "Kafka refused the request: Unable to replicate the partition 3 time(s): ...",
        ),
        503: UNAVAILABLE,
    },
)
async def create_topic(rt: RuntimeDep, body: NewTopicBody) -> Response:
    configs = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in body.configs.items()}
    admin = cluster_admin(rt)
    await admin.create_topic(body.name, body.partitions, body.replication_factor, configs)
    await settle_topic(rt, body.name, present=True)
    detail = await admin.describe_topic(body.name)
    return Response(
        encode(topic_json(detail)), status_code=201, media_type=JSON, headers={"Location": f"/topics/{body.name}"}
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
        503: UNAVAILABLE,
    },
)
async def describe_topic(
    rt: RuntimeDep,
    topic: Annotated[str, Path(max_length=249)],
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    detail = await cluster_admin(rt).describe_topic(topic)
    return Response(encode(topic_json(detail)), media_type=media(accept))


@router.delete(
    "/topics/{topic}",
    status_code=204,
    summary="Delete a topic",
    responses={204: {"description": "Deleted"}, 404: _TOPIC_404, 503: UNAVAILABLE},
)
async def delete_topic(rt: RuntimeDep, topic: Annotated[str, Path(max_length=249)]) -> Response:
    await cluster_admin(rt).delete_topic(topic)
    await settle_topic(rt, topic, present=False)
    return Response(status_code=204)
