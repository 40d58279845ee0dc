"""Test helpers: live gateway processes and reading records back from Kafka directly."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Message, TopicPartition
from httpx_sse import EventSource, ServerSentEvent

from localkafka import free_port


@dataclass
class GatewayProcess:
    """``python -m gateway`` as a real process on a free loopback port."""

    bootstrap: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Where the process's stderr (its logs) goes: a file to read them back, or None to inherit.
    log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(self.port),
                "GATEWAY_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "GATEWAY_LOG_LEVEL": "warning",
            }
        )
        env.update(self.env)
        log = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stderr=log)
        if log is not None:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("gateway did not start")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        self.process = None
        return code

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_all(bootstrap: str, topic: str, expected: int, partitions: int = 1, timeout_s: float = 20.0) -> list[Message]:
    """Every record of ``topic`` from the beginning, read with confluent-kafka directly."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "enable.auto.commit": "false",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(out) < expected:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    out.append(msg)
        # Linger briefly to catch records beyond what was expected (duplicates).
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()


def record_view(msg: Message) -> dict[str, Any]:
    return {
        "key": msg.key(),
        "value": msg.value(),
        "headers": msg.headers() or [],
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
    }


def record_events(source: EventSource) -> Iterator[ServerSentEvent]:
    """Events that carry data. httpx-sse also yields the data-less ``retry:`` block as an event,
    which browsers (per the SSE spec) do not dispatch."""
    for event in source.iter_sse():
        if event.data or event.event != "message":
            yield event


class AccessLines(logging.Handler):
    """Captures the gateway's access log lines (logger ``gateway.access``) of in-process apps."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


class JwksServer:
    """An identity provider's JWKS endpoint on loopback: ``document`` (or ``status``) can change any time."""

    def __init__(self) -> None:
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/certs"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def serve(self, *keys: tuple[str, Any]) -> None:
        """Publish these (kid, RSA private key) pairs' public halves."""
        import jwt

        self.document = {
            "keys": [
                {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": kid, "alg": "RS256"}
                for kid, private in keys
            ]
        }

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
