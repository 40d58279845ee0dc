"""Gateway configuration.

Every setting comes from the environment with the ``GATEWAY_`` prefix; nested models use ``__``
(``GATEWAY_SSE__HEARTBEAT_S=5``). Any librdkafka property passes through ``GATEWAY_KAFKA__<NAME>``
where the name's underscores stand for librdkafka's dots (``GATEWAY_KAFKA__BOOTSTRAP_SERVERS`` is
``bootstrap.servers``). Secrets may also come from files in ``GATEWAY_SECRETS_DIR`` (one file per
variable name, as Kubernetes mounts them).

Every bound in the gateway is a named default here or in a section model (``gateway.settings_sections``),
so an operator can see and change it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.settings_sections import (
    AuthSettings,
    ConfluentSettings,
    ProduceLimits,
    QuotaSettings,
    ReadSettings,
    SseSettings,
    TracingSettings,
)

# The sections' models live in gateway.settings_sections; importable from here as before.
__all__ = [
    "DEFAULT_BOOTSTRAP",
    "KAFKA_SECRET_PROPERTIES",
    "AuthSettings",
    "ConfluentSettings",
    "ProduceLimits",
    "QuotaSettings",
    "ReadSettings",
    "Settings",
    "SseSettings",
    "TracingSettings",
]

DEFAULT_BOOTSTRAP = "localhost:9092"


# librdkafka properties that may be read from a file: GATEWAY_KAFKA__SASL_PASSWORD_FILE=/run/secrets/pw.
KAFKA_SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "sasl.username",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "ssl.certificate.pem",
        "ssl.ca.pem",
    }
)


def _kafka_secret_files(conf: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in conf.items():
        name = key.removesuffix(".file")
        if name != key and name in KAFKA_SECRET_PROPERTIES:
            try:
                # One trailing newline is what editors and `echo` add; it is never part of the secret.
                out[name] = Path(value).read_text().removesuffix("\n").removesuffix("\r")
            except OSError as exc:
                # The message names the file, never its content.
                raise ValueError(f"{name}: cannot read {value!r} ({exc.strerror})") from None
        else:
            out[key] = value
    return out


class Settings(BaseSettings):
    """All of the gateway's configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        secrets_dir=os.environ.get("GATEWAY_SECRETS_DIR") or None,
    )

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # Absolute URL under which clients reach this very process (Confluent v2 base_uri).
    advertised_url: str | None = None

    # librdkafka properties shared by every client the gateway builds; dots or underscores.
    kafka: dict[str, str] = Field(default_factory=dict)
    kafka_producer: dict[str, str] = Field(default_factory=dict)
    kafka_consumer: dict[str, str] = Field(default_factory=dict)

    produce: ProduceLimits = Field(default_factory=ProduceLimits)
    sse: SseSettings = Field(default_factory=SseSettings)
    reads: ReadSettings = Field(default_factory=ReadSettings)
    confluent: ConfluentSettings = Field(default_factory=ConfluentSettings)
    # One JSON line per request on the ``gateway.access`` logger (stderr).
    access_log: bool = True
    # librdkafka statistics (producer) exported as gauges every this many ms; 0 turns them off.
    kafka_stats_interval_ms: Annotated[int, Field(ge=0)] = 15_000
    # Lag of the consumer groups the gateway's consumers belong to, into gauges this often; 0 turns it off.
    group_lag_interval_s: Annotated[float, Field(ge=0)] = 30.0

    # Blocking client calls (consume, metadata, offsets, close) run on this many threads.
    kafka_threads: Annotated[int, Field(ge=2, le=256)] = 32
    metadata_refresh_s: Annotated[float, Field(gt=0)] = 10.0
    # /readyz turns 503 when the last good metadata answer is older than this.
    metadata_max_age_s: Annotated[float, Field(gt=0)] = 30.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # On SIGTERM: turn unready, let streams say goodbye, then stop within this many seconds.
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 10.0

    auth: AuthSettings = Field(default_factory=AuthSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # Browser origins allowed by CORS: a JSON list or comma-separated ("*" allows any; empty: no CORS).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("kafka", "kafka_producer", "kafka_consumer", mode="after")
    @classmethod
    def _secret_files(cls, value: dict[str, str]) -> dict[str, str]:
        return _kafka_secret_files(value)

    @field_validator("kafka", "kafka_producer", "kafka_consumer", mode="before")
    @classmethod
    def _librdkafka_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower().replace("_", "."): str(v) for k, v in value.items()}
        return value

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka configuration every client shares (bootstrap, security, client id)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": DEFAULT_BOOTSTRAP,
            "client.id": "kafka-http-gateway",
            # librdkafka's own log lines go through Python logging, not straight to stderr.
            "logger": logging.getLogger("librdkafka"),
        }
        conf.update(self.kafka)
        return conf
