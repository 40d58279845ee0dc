"""Structural checks of compose.yaml (the Docker Compose CLI and engine are not needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.lifespan import PRODUCER_CLOSE_TIMEOUT_S
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())["services"]


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * units[unit]
    return float(value)


def test_kafka_is_a_single_kraft_node_with_a_healthcheck(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert "test" in kafka["healthcheck"]


def test_gateway_waits_for_kafka_and_points_at_it(services: dict[str, Any]) -> None:
    gw = services["gateway"]
    assert gw["build"]["context"] == "."
    assert gw["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert gw["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    endpoints = {a.split("://", 1)[1] for a in advertised}
    assert gw["environment"]["GATEWAY_KAFKA__BOOTSTRAP_SERVERS"] in endpoints
    assert gw["environment"]["GATEWAY_HOST"] == "0.0.0.0"


def test_gateway_environment_names_real_settings(services: dict[str, Any]) -> None:
    for key in services["gateway"]["environment"]:
        field = key.removeprefix("GATEWAY_").split("__")[0].lower()
        assert field in Settings.model_fields, f"{key} is not a gateway setting"


def test_gateway_is_hardened_like_the_pod(services: dict[str, Any]) -> None:
    gw = services["gateway"]
    assert gw["user"] == "10001:10001" and gw["read_only"] is True and "/tmp" in gw["tmpfs"]
    assert gw["cap_drop"] == ["ALL"]
    drain = float(gw["environment"]["GATEWAY_SHUTDOWN_GRACE_S"])
    assert _seconds(gw["stop_grace_period"]) > drain + PRODUCER_CLOSE_TIMEOUT_S


def test_example_topic_matches_the_kubernetes_one(services: dict[str, Any]) -> None:
    cmd = services["kafka-init"]["command"]
    assert cmd[cmd.index("--topic") + 1] == "events" and cmd[cmd.index("--partitions") + 1] == "6"
