"""The sections of the gateway's configuration: one model per nested ``GATEWAY_<SECTION>__`` group.

``gateway.settings.Settings`` gathers them (and re-exports them: import them from there). Every bound
is a named default, so an operator can see and change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator


class ProduceLimits(BaseModel):
    """Bounds on what one produce request may carry and how long it may wait."""

    max_body_bytes: Annotated[int, Field(gt=0)] = 8 * 1024 * 1024
    # librdkafka's own default message.max.bytes and the broker's default max.message.bytes
    # are both about 1 MB; a larger record would only fail later, at the broker.
    max_record_bytes: Annotated[int, Field(gt=0)] = 1_000_000
    max_batch_records: Annotated[int, Field(gt=0)] = 10_000
    # Short enough for an HTTP client to still be waiting; librdkafka retries within it.
    delivery_timeout_ms: Annotated[int, Field(ge=1000)] = 15_000
    # Records queued or in flight in this process; beyond it requests get 429, not a long wait.
    max_in_flight_records: Annotated[int, Field(gt=0)] = 200_000
    max_in_flight_bytes: Annotated[int, Field(gt=0)] = 256 * 1024 * 1024
    # NDJSON streaming produce: records awaiting their delivery report per stream.
    ndjson_window: Annotated[int, Field(gt=0)] = 1000
    idempotency_window_s: Annotated[float, Field(gt=0)] = 300.0
    idempotency_max_keys: Annotated[int, Field(gt=0)] = 100_000
    retry_after_s: Annotated[int, Field(ge=1)] = 1
    # Producing to a topic that does not exist creates it (API.md §1: off unless the operator turns it on),
    # with these partitions and replication factor; unset: the broker's num.partitions and
    # default.replication.factor. The gateway's Kafka user needs the Create right for it.
    auto_create_topics: bool = False
    auto_create_partitions: Annotated[int | None, Field(gt=0)] = None
    auto_create_replication_factor: Annotated[int | None, Field(gt=0)] = None

    @model_validator(mode="after")
    def _fits_in_flight(self) -> ProduceLimits:
        # A request larger than the in-flight bounds could never be accepted: it would get 429 with
        # Retry-After forever. Refuse such a configuration at start-up instead.
        if self.max_batch_records > self.max_in_flight_records:
            raise ValueError("max_batch_records must not exceed max_in_flight_records")
        if self.ndjson_window > self.max_in_flight_records:
            raise ValueError("ndjson_window must not exceed max_in_flight_records")
        if max(self.max_body_bytes, self.max_record_bytes) > self.max_in_flight_bytes:
            raise ValueError("max_body_bytes and max_record_bytes must not exceed max_in_flight_bytes")
        return self


class SseSettings(BaseModel):
    """Bounds and timing of server-sent event streams."""

    heartbeat_s: Annotated[float, Field(gt=0)] = 15.0
    retry_ms: Annotated[int, Field(ge=0)] = 2000
    max_streams: Annotated[int, Field(gt=0)] = 10_000
    # Encoded events waiting for one slow subscriber before it is evicted.
    subscriber_buffer: Annotated[int, Field(gt=0)] = 1000
    send_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Records per poll and per write of a stream. A shared feed's poll takes at most half a subscriber's
    # buffer, so a subscriber one chunk behind is not evicted by the next one.
    batch_max_records: Annotated[int, Field(gt=0)] = 2000
    poll_timeout_s: Annotated[float, Field(gt=0)] = 0.2
    # Connected assign-mode consumers kept ready, so a new stream's first event skips the broker handshake.
    warm_consumers: Annotated[int, Field(ge=0, le=64)] = 2
    # Assign-mode streams (from earliest, a time or a cursor) borrow connected consumers from a pool
    # (gateway/kafka/pool.py) and give them back unassigned: at most this many are kept idle ...
    pool_max_idle: Annotated[int, Field(ge=0, le=256)] = 8
    # ... this many of them connected in advance (at most pool_max_idle) ...
    pool_warm: Annotated[int, Field(ge=0, le=64)] = 2
    # ... and one unused this long is closed (below the brokers' 10-minute idle-connection limit).
    pool_idle_s: Annotated[float, Field(gt=0)] = 120.0
    # A stream's first poll takes at most this many records, so its first event is not held back
    # while a whole batch is encoded.
    first_batch_records: Annotated[int, Field(gt=0)] = 32


class ReadSettings(BaseModel):
    """Bounds of stateless reads (``GET /topics/{t}/partitions/{p}/records``, API.md §2.2)."""

    default_limit: Annotated[int, Field(gt=0)] = 100
    max_limit: Annotated[int, Field(gt=0)] = 10_000
    # Response size when the client names no max_bytes; at least one record is always returned.
    default_max_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024
    # Longest long-poll a client may ask for; longer requests are capped, not refused.
    max_timeout_ms: Annotated[int, Field(ge=0)] = 30_000
    # Time allowed to fetch records known to exist (below the high watermark) when timeout_ms is shorter.
    fetch_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Assign-mode consumers kept for reads; more concurrent reads wait for one.
    pool_size: Annotated[int, Field(gt=0, le=256)] = 8
    # A read that finds every pooled consumer busy (long-polls hold theirs) waits this long, then 429.
    max_wait_s: Annotated[float, Field(gt=0)] = 5.0


class ConfluentSettings(BaseModel):
    """Confluent REST Proxy v2 consumer instances (API.md §3); defaults follow the proxy's own."""

    # An instance nobody used for this long is closed and forgotten (consumer.instance.timeout.ms).
    instance_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    # Consumer instances per process; more are refused with 429.
    max_instances: Annotated[int, Field(gt=0)] = 1000
    # A records fetch waits at most this long by default (consumer.request.timeout.ms) ...
    request_timeout_ms: Annotated[int, Field(gt=0)] = 1000
    # ... and never longer than this, whatever the instance or the request asks.
    max_request_timeout_ms: Annotated[int, Field(gt=0)] = 30_000
    # Upper bound of one records response (consumer.request.max.bytes); one record always fits.
    max_response_bytes: Annotated[int, Field(gt=0)] = 64 * 1024 * 1024
    # Records taken from librdkafka per consume() call; what does not fit a response stays buffered.
    fetch_batch_records: Annotated[int, Field(gt=0)] = 500
    # One consume() call blocks an executor thread at most this long; a fetch loops until its timeout.
    poll_slice_s: Annotated[float, Field(gt=0)] = 0.2


class AuthSettings(BaseModel):
    """Who may call the gateway (API.md §6; gateway/auth/). ``none`` lets everyone do everything."""

    mode: Literal["none", "api-key", "jwt"] = "none"
    # api-key: a JSON file of {"keys": [{"name", "sha256", "scopes", "quota"?}]}; only hashes are stored.
    api_keys_file: Path | None = None
    # jwt: one algorithm, fixed here and never taken from the token (RFC 8725 §2.1).
    jwt_algorithm: Literal["HS256", "RS256"] = "RS256"
    # HS256: the shared secret; RS256: a PEM public key. Or a JWKS document (keys chosen by "kid").
    jwt_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    # Or the identity provider's JWKS URL (e.g. Keycloak's .../protocol/openid-connect/certs), fetched at
    # start and every jwt_jwks_refresh_s off the event loop, and sooner when a token names an unknown kid.
    jwt_jwks_url: str | None = None
    jwt_jwks_refresh_s: Annotated[float, Field(gt=0)] = 300.0
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Claim holding the scopes: a space-separated string (OAuth 2) or a list; dots walk nested objects.
    jwt_scope_claim: str = "scope"
    jwt_principal_claim: str = "sub"
    jwt_leeway_s: Annotated[float, Field(ge=0, le=300)] = 30.0
    # Verified tokens remembered (until they expire) so a JWT's signature is checked once, not per request.
    jwt_cache_size: Annotated[int, Field(ge=0)] = 10_000
    # Key files are re-read this often when they change on disk (rotation without a restart).
    reload_s: Annotated[float, Field(gt=0)] = 10.0
    # Consumer-instance requests are read whole to learn the topics they name; larger bodies are 413.
    max_inspected_body_bytes: Annotated[int, Field(gt=0)] = 1024 * 1024

    @model_validator(mode="after")
    def _complete(self) -> AuthSettings:
        if self.mode == "api-key" and self.api_keys_file is None:
            raise ValueError("GATEWAY_AUTH__API_KEYS_FILE is required when GATEWAY_AUTH__MODE=api-key")
        if self.mode == "jwt":
            sources = [self.jwt_key_file, self.jwt_jwks_file, self.jwt_jwks_url]
            if sum(source is not None for source in sources) != 1:
                raise ValueError(
                    "mode jwt needs one of GATEWAY_AUTH__JWT_KEY_FILE, GATEWAY_AUTH__JWT_JWKS_FILE, "
                    "GATEWAY_AUTH__JWT_JWKS_URL"
                )
            if self.jwt_jwks_url is not None and not self.jwt_jwks_url.startswith(("https://", "http://")):
                raise ValueError("GATEWAY_AUTH__JWT_JWKS_URL must be an http(s) URL")
            if not self.jwt_issuer or not self.jwt_audience:
                raise ValueError("mode jwt needs GATEWAY_AUTH__JWT_ISSUER and GATEWAY_AUTH__JWT_AUDIENCE")
        for path in (self.api_keys_file, self.jwt_key_file, self.jwt_jwks_file):
            if path is not None and not path.is_file():
                raise ValueError(f"cannot read file {str(path)!r}")
        return self


class QuotaSettings(BaseModel):
    """Per-principal quotas (gateway/quotas.py); unset means unlimited. A key in the key file may override them."""

    records_per_s: Annotated[float | None, Field(gt=0)] = None
    bytes_per_s: Annotated[float | None, Field(gt=0)] = None
    # Concurrent SSE streams of one principal on this process.
    max_streams: Annotated[int | None, Field(gt=0)] = None
    # Bucket depth in seconds of rate: how far a quiet principal may burst above its rate.
    burst_s: Annotated[float, Field(gt=0)] = 1.0
    # Principals whose buckets are remembered; the idlest are forgotten first (full buckets lose nothing).
    max_principals: Annotated[int, Field(gt=0)] = 100_000


class TracingSettings(BaseModel):
    """OpenTelemetry spans and W3C trace context in records (gateway/tracing/; the ``tracing`` extra).

    Unset fields defer to the standard variables the OpenTelemetry SDK reads (``OTEL_SERVICE_NAME``,
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ...).
    """

    enabled: bool = False
    # none: spans are made and trace context goes into records, but nothing is exported.
    exporter: Literal["otlp", "console", "none"] = "otlp"
    # OTLP/HTTP (protobuf) URL; a bare "http://collector:4318" gets "/v1/traces" appended.
    otlp_endpoint: str | None = None
    # Default: OTEL_SERVICE_NAME, else "kafka-http-gateway".
    service_name: str | None = None
    # Share of new traces kept; a request with a traceparent follows its caller's decision (parent-based).
    sample_ratio: Annotated[float | None, Field(ge=0, le=1)] = None
    # At shutdown, queued spans are exported within this long, then dropped.
    shutdown_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Request paths never traced (exact match; a JSON list): probes and scrapes would drown the real traffic.
    exclude_paths: list[str] = Field(default_factory=lambda: ["/healthz", "/readyz", "/metrics"])

    @model_validator(mode="after")
    def _installed(self) -> TracingSettings:
        if self.enabled:
            import importlib.util

            needed = ["opentelemetry.sdk.trace"]
            if self.exporter == "otlp":
                needed.append("opentelemetry.exporter.otlp.proto.http")
            for name in needed:
                try:
                    found = importlib.util.find_spec(name) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    raise ValueError(
                        "tracing is enabled but OpenTelemetry is not installed: "
                        "pip install 'kafka-http-gateway[tracing]' (or set GATEWAY_TRACING__ENABLED=false)"
                    )
        return self
