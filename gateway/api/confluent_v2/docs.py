"""OpenAPI pieces the v2 modules share: common error entries and a v2 JSON request body."""

from __future__ import annotations

from typing import Any

from gateway.api.confluent_v2.media import V2

E400 = (400, "Malformed JSON (40001)")
E404_INSTANCE = (404, "Consumer instance not found (40403): deleted, expired, or owned by another process")
E406 = (406, "No acceptable response type (40601)")
E415 = (415, "Unsupported Content-Type (41501)")
E422 = (422, "Body breaks the schema (42201)")


def json_body(example: Any) -> dict[str, Any]:
    return {"requestBody": {"content": {V2: {"schema": {"type": "object"}, "example": example}}}}
