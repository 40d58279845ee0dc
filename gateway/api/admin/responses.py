"""What the admin routes answer with: the two media types, the JSON encoder, and their OpenAPI error entries."""

from __future__ import annotations

from typing import Any

import msgspec

JSON = "application/json"
V2 = "application/vnd.kafka.v2+json"

encode = msgspec.json.encode
_ERR_SCHEMA = {"schema": {"$ref": "#/components/schemas/Error"}}


def err(description: str, code: int, message: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {**_ERR_SCHEMA, "example": {"error_code": code, "message": message}}},
    }


UNAVAILABLE = err("Kafka unreachable; see Retry-After", 50301, "Kafka did not answer the admin request in time.")


def media(accept: str | None) -> str:
    return V2 if accept and V2 in accept.lower() else JSON
