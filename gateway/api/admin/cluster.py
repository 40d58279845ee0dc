"""The cluster route: its id, brokers and controller; and a broker's JSON shape, which groups share."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from gateway.api.admin.client import cluster_admin
from gateway.api.admin.responses import JSON, UNAVAILABLE, encode
from gateway.api.deps import RuntimeDep
from gateway.kafka.admin import Broker

router = APIRouter(tags=["admin"])


def broker_json(b: Broker | None) -> dict[str, Any] | None:
    return None if b is None else {"id": b.id, "host": b.host, "port": b.port, "rack": b.rack}


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
        503: UNAVAILABLE,
    },
)
async def cluster(rt: RuntimeDep) -> Response:
    info = await cluster_admin(rt).cluster()
    body = {
        "cluster_id": info.cluster_id,
        "controller": broker_json(info.controller),
        "brokers": [broker_json(b) for b in info.brokers],
    }
    return Response(encode(body), media_type=JSON)
