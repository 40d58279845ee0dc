"""Settings that could never work are refused at start-up, naming what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GATEWAY_PRODUCE__MAX_BATCH_RECORDS": "500", "GATEWAY_PRODUCE__MAX_IN_FLIGHT_RECORDS": "100"}, "max_batch"),
        ({"GATEWAY_PRODUCE__NDJSON_WINDOW": "5000", "GATEWAY_PRODUCE__MAX_IN_FLIGHT_RECORDS": "1000"}, "ndjson_window"),
        ({"GATEWAY_PRODUCE__MAX_IN_FLIGHT_BYTES": "1000"}, "max_body_bytes"),
    ],
)
def test_a_request_that_could_never_fit_in_flight_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_consistent_limits_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PRODUCE__MAX_BATCH_RECORDS", "100")
    monkeypatch.setenv("GATEWAY_PRODUCE__MAX_IN_FLIGHT_RECORDS", "100")
    monkeypatch.setenv("GATEWAY_PRODUCE__NDJSON_WINDOW", "100")
    limits = Settings().produce
    assert (limits.max_batch_records, limits.max_in_flight_records, limits.ndjson_window) == (100, 100, 100)
