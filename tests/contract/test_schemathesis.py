"""Hostile input: schemathesis drives every operation of the served OpenAPI against a live gateway.

Whatever it sends, the gateway answers without a 5xx (Kafka is up) and every error keeps the
``{error_code, message}`` shape. Bounded: a fixed number of examples per operation; endless streams
are excluded (the SSE tests cover their errors). The schema is the one the app serves (a unit test
keeps ``openapi/openapi.json`` equal to it); requests go to a real ``python -m gateway`` process.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, settings

from gateway.openapi import render
from tests.helpers import GatewayProcess

EXAMPLES_PER_OPERATION = 25
# Endless server-sent event streams never complete a request.
STREAMING_PATHS = r"/events$"


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    """NDJSON bodies: a generated string goes as is, anything else as one JSON line."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode() + b"\n"


schema = schemathesis.openapi.from_dict(json.loads(render())).exclude(path_regex=STREAMING_PATHS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_errors_keep_their_shape(case: schemathesis.Case, gateway: GatewayProcess) -> None:
    response = case.call(base_url=gateway.url, timeout=15)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error_code", "message"}, body
        assert body["error_code"] // 100 == response.status_code, body
        assert isinstance(body["message"], str) and body["message"]
