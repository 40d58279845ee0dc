"""Hostile input: schemathesis drives every operation of the served OpenAPI against a live gateway.

Whatever it sends, the gateway answers without a 5xx (Kafka is up) and every error keeps the
``{error_code, message}`` shape. Bounded: a fixed number of examples per operation, no shrinking
beyond hypothesis' defaults, endless streams excluded (they are covered by the SSE tests).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.helpers import GatewayProcess

EXAMPLES_PER_OPERATION = 25
# Endless server-sent event streams never complete a request; their errors are tested directly.
STREAMING_PATHS = r"/events$"


@pytest.fixture(scope="module")
def api_schema(gateway: GatewayProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json").exclude(path_regex=STREAMING_PATHS)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_errors_keep_their_shape(case: schemathesis.Case) -> None:
    response = case.call(timeout=15)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error_code", "message"}, body
        assert body["error_code"] // 100 == response.status_code, body
        assert isinstance(body["message"], str) and body["message"]
