"""Admin routes (API.md §4): topics, consumer groups and the cluster.

``GET /topics`` and ``GET /topics/{topic}`` serve both the native API and Confluent REST Proxy v2:
the list is a JSON array of names (v2's shape) and a topic is v2's ``{name, configs, partitions:
[{partition, leader, replicas: [{broker, leader, in_sync}]}]}`` with the native extras added (``isr``,
``earliest_offset``, ``latest_offset`` per partition; ``internal``). A request whose ``Accept`` names
``application/vnd.kafka.v2+json`` gets that Content-Type; every other one gets ``application/json``.

One module a concept: ``topics``, ``groups`` (consumer groups and lag), ``cluster``; ``responses``
(media types, encoder, error entries) and ``client`` (the runtime's admin client) they share.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.admin import cluster, groups, topics

__all__ = ["router"]

router = APIRouter()
# Order of registration is the order of the routes (and of the OpenAPI paths): as before the split.
# No include prefix: a route's own path is the template that metrics, access logs and tracing report.
for _part in (topics, groups, cluster):
    router.include_router(_part.router)
