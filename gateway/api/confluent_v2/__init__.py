"""Confluent REST Proxy API v2 (API.md §3): produce, consumer instances and partition metadata.

Paths, media types, bodies and error codes are the Confluent proxy's, so its clients work unchanged.
One module a concept: ``media`` (content negotiation, body limits), ``produce``, ``metadata``
(partitions, brokers), ``consumers`` (instance lifecycle, subscription, positions, offsets) and
``fetch`` (their records). ``GET /topics`` and ``GET /topics/{t}`` are served by the admin API in
the same v2 shape.

Embedded formats: ``binary`` (base64 strings) and ``json``; ``avro``, ``jsonschema`` and ``protobuf``
need a schema registry and are refused with 415 (produce) or 42204 (consumer creation).
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.confluent_v2 import consumers, fetch, metadata, produce

router = APIRouter()
# Order of registration is the order of the routes (and of the OpenAPI paths): as before the split.
for _part in (produce, metadata, consumers, fetch):
    router.include_router(_part.router)
