"""Confluent REST Proxy API v3 (API.md §3): clusters, topics, consumer groups and lags, and produce.

Shapes follow Confluent's v3 OpenAPI (``kind``, ``metadata.self``, ``related`` links, lists as
``{"kind": "...List", "metadata": {...}, "data": [...]}``). Links are absolute, built from the
advertised URL when set. Errors keep the gateway's ``{"error_code", "message"}`` with its 5-digit
codes; a produce report that succeeded has ``error_code`` 200, as in Confluent's.

One module a concept: ``links`` (the cluster check, links and JSON answers every route shares),
``clusters``, ``topics``, ``groups`` (consumer groups and lags), ``produce`` and
``produce_records`` (request body -> Kafka records, concatenated-JSON splitting).
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.confluent_v3 import clusters, groups, produce, topics
from gateway.api.confluent_v3.produce_records import ConcatenatedJson

__all__ = ["ConcatenatedJson", "router"]

router = APIRouter()
# Order of registration is the order of the routes (and of the OpenAPI paths): as before the split.
# Each part carries the /v3 prefix itself: a route's own path is the template that metrics, access
# logs and tracing report, and an include prefix is not part of it.
for _part in (clusters, topics, groups, produce):
    router.include_router(_part.router)
