"""OpenAPI of native produce (``POST /topics/{topic}/records``, API.md §1): parameters, body, answers.

The route reads its parameters by hand (see ``gateway.api.produce``), so they are documented here rather
than declared. The body schema is generated from the same msgspec type the route decodes
(``records.ProduceBody``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway import records

JSON = "application/json"
NDJSON = "application/x-ndjson"
MAX_TOPIC_CHARS = 249


def _schema() -> dict[str, Any]:
    (body_schema,), components = msgspec.json.schema_components(
        [records.ProduceBody], ref_template="#/components/schemas/{name}"
    )
    return {"body": body_schema, "components": components}


SCHEMAS = _schema()
_ERR_REF = {"$ref": "#/components/schemas/Error"}


def _err(description: str, **examples: tuple[int, str]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": _ERR_REF,
                "examples": {name: {"value": {"error_code": c, "message": m}} for name, (c, m) in examples.items()},
            }
        },
    }


def _param(where: str, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


_FORMAT = {"type": "string", "enum": ["json", "string", "binary"]}
PARAMETERS = [
    _param("path", "topic", "Topic name", {"type": "string", "maxLength": MAX_TOPIC_CHARS}),
    _param("query", "format", "Sets key_format and value_format", _FORMAT),
    _param("query", "key_format", "How the key is written (default string)", _FORMAT),
    _param("query", "value_format", "How the value is written (default json)", _FORMAT),
    _param("query", "async", "202 once queued, without waiting for Kafka's acknowledgement", {"type": "boolean"}),
    _param("header", "prefer", "`respond-async` is the same as async=true", {"type": "string"}),
    _param(
        "header",
        "idempotency-key",
        "1-255 characters. A retry with the same key, topic, formats and body within the window returns the "
        "first answer and produces nothing; the key is written as record header `idempotency-key`. "
        "Ignored for NDJSON.",
        {"type": "string", "minLength": 1, "maxLength": 255},
    ),
]

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}

OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": PARAMETERS,
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": SCHEMAS["body"],
                "examples": {
                    "one": {
                        "summary": "One record",
                        "value": {"key": "user-1", "value": {"clicked": "buy"}, "headers": {"source": "web"}},
                    },
                    "batch": {
                        "summary": "A batch (results in input order)",
                        "value": {"records": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "partition": 0}]},
                    },
                    "timestamp": {
                        "summary": "Explicit timestamp (RFC 3339 or epoch ms)",
                        "value": {"key": "k", "value": "v", "timestamp": "2024-05-01T12:00:00.250Z"},
                    },
                    "tombstone": {"summary": "Tombstone (null value)", "value": {"key": "user-1", "value": None}},
                    "binary": {
                        "summary": "With ?value_format=binary: base64 text, written decoded",
                        "value": {"key": "k", "value": "aGVsbG8="},
                    },
                },
            },
            NDJSON: {
                "schema": {"type": "string", "description": "One record object per line (blank lines are skipped)."},
                "example": '{"key":"a","value":1}\n{"key":"b","value":2}\n',
            },
        },
    },
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every record acknowledged by Kafka (acks=all). One record: its position; a batch: "
        "`results` in input order. NDJSON: one result line per non-blank input line, in order, each a "
        "position or an error (a bad line does not end the stream).",
        "headers": {"Idempotency-Replayed": {"description": "`true` when this is a remembered answer"}},
        "content": {
            JSON: {
                "examples": {
                    "one": {"value": {"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1700000000000}},
                    "batch": {
                        "value": {
                            "results": [
                                {"partition": 0, "offset": 42, "timestamp": 1700000000000},
                                {"partition": 2, "offset": 7, "timestamp": 1700000000000},
                            ]
                        }
                    },
                }
            },
            NDJSON: {
                "example": '{"partition":0,"offset":42,"timestamp":1700000000000}\n'
                '{"error_code":42201,"message":"Invalid record: line 2: \'value\' is required '
                '(null writes a tombstone)."}\n'
            },
        },
    },
    202: {
        "description": "Queued (`?async=true` or `Prefer: respond-async`), not yet acknowledged; no offsets.",
        "content": {JSON: {"example": {"queued": 2}}},
    },
    207: {
        "description": "Some records of the batch failed, each for its own reason; each result is a position or "
        'an error. With async, queued records show as `{"queued": true}`.',
        "headers": _RETRY_AFTER,
        "content": {
            JSON: {
                "example": {
                    "results": [
                        {"partition": 0, "offset": 7, "timestamp": 1700000000000},
                        {"error_code": 40402, "message": "Partition 9 of topic 'orders' not found."},
                    ]
                }
            }
        },
    },
    400: _err(
        "Malformed JSON, bad query parameter or bad Idempotency-Key",
        malformed=(40001, "Malformed JSON: Input data was truncated."),
        query=(40001, "Query parameter 'value_format' must be one of json, string, binary; got 'xml'."),
    ),
    404: _err(
        "Unknown topic (40401, answered from cached metadata; with GATEWAY_PRODUCE__AUTO_CREATE_TOPICS on, the "
        "topic is created instead unless Kafka could never accept its name); for one record, unknown partition (40402). "
        "In a batch where every record names a missing partition, 404 with `results`.",
        topic=(40401, "Topic 'orders' not found."),
        partition=(40402, "record: Partition 9 of topic 'orders' not found."),
    ),
    413: _err(
        "Body, record or batch over the limits (checked before anything is produced)",
        body=(41301, "Body of 9000000 bytes is over the limit of 8388608 bytes."),
        record=(41301, "records[3]: 1000017 bytes is over the limit of 1000000 bytes per record."),
        batch=(41301, "Batch of 10001 records is over the limit of 10000."),
    ),
    415: _err(
        "Content-Type is not application/json or application/x-ndjson",
        media=(41501, "Content-Type must be application/json or application/x-ndjson; got 'text/plain'."),
    ),
    422: _err(
        "Well-formed JSON that breaks the record schema (names the record; nothing is produced), or an "
        "Idempotency-Key reused with a different request",
        schema=(42201, "Invalid record: records[3].key must be a JSON string or null with key_format=string, got int."),
        idempotency=(
            42201,
            "This Idempotency-Key was already used with a different request body, topic or format; "
            "use a new key for a new request.",
        ),
    ),
    429: {
        **_err(
            "The gateway's producer queue is full; nothing of this request was produced",
            full=(42901, "The gateway's producer queue is full (200000 records in flight); retry shortly."),
        ),
        "headers": _RETRY_AFTER,
    },
    503: {
        **_err(
            "Kafka unreachable or delivery timed out, or the gateway is shutting down",
            timeout=(
                50301,
                "Kafka did not acknowledge the record within the delivery timeout; it may or may not have been "
                "written. Retry (with an Idempotency-Key to be safe).",
            ),
        ),
        "headers": _RETRY_AFTER,
    },
}
