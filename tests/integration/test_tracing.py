"""Tracing (the ``tracing`` extra) against a real broker: spans really exported over OTLP/HTTP to a
receiver on 127.0.0.1, and W3C trace context in the records Kafka stores (read back with confluent-kafka)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.helpers import AccessLines, GatewayProcess, read_all
from tests.integration.sse_support import stream, take

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
CLIENT_RECORD_TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SERVER, PRODUCER = 2, 4  # OTLP Span.SpanKind
STATUS_ERROR = 2  # OTLP Status.StatusCode


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    status: int
    resource: dict[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Receiver:
    """A minimal OTLP/HTTP (protobuf) traces endpoint: keeps every span it is sent."""

    def __init__(self, delay_s: float = 0.0) -> None:
        spans: list[Span] = []
        self.spans = spans
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(delay_s)  # a collector that hangs
                req = ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            spans.append(
                                Span(
                                    s.name,
                                    s.kind,
                                    s.trace_id.hex(),
                                    s.span_id.hex(),
                                    s.parent_span_id.hex(),
                                    {a.key: _value(a.value) for a in s.attributes},
                                    s.status.code,
                                    resource,
                                )
                            )
                owner.requests += 1
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        owner = self
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def tracing_on(receiver: Receiver, **more: object) -> dict[str, object]:
    # The bare base URL: the gateway appends /v1/traces, as OTLP/HTTP wants.
    return {"tracing": {"enabled": True, "otlp_endpoint": receiver.base_url, **more}}


def headers_of(msg: Message) -> list[tuple[str, bytes]]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v) for k, v in pairs if isinstance(v, bytes)]


def by_offset(msgs: list[Message]) -> list[Message]:
    return sorted(msgs, key=lambda m: m.offset() or 0)


def traceparent(msg: Message) -> str:
    found = [v.decode() for k, v in headers_of(msg) if k == "traceparent"]
    assert len(found) == 1, headers_of(msg)
    return found[0]


def sampled_flag(msg: Message) -> int:
    return int(traceparent(msg).rsplit("-", 1)[1], 16) & 1


async def test_produce_writes_its_span_context_into_each_record_and_exports_parented_spans(
    make_client: Callable[..., Any], bootstrap: str, topic: str, receiver: Receiver, access_log: AccessLines
) -> None:
    body = {
        "records": [
            {"key": "a", "value": {"n": 1}},
            {"key": "b", "value": {"n": 2}, "headers": {"source": "web"}},
            # The client's own trace context wins over the gateway's.
            {"key": "c", "value": {"n": 3}, "headers": {"traceparent": CLIENT_RECORD_TP}},
        ]
    }
    async with make_client(**tracing_on(receiver)) as client:
        r = await client.post(
            f"/topics/{topic}/records", json=body, headers={"traceparent": INCOMING, "tracestate": "vendor=abc"}
        )
        assert r.status_code == 200, r.text
        request_id = r.headers["x-request-id"]
    # Leaving the client ran the lifespan's shutdown, which flushes the span processor.

    msgs = by_offset(read_all(bootstrap, topic, 3))
    assert [m.key() for m in msgs] == [b"a", b"b", b"c"]
    version, trace_id, span_id, flags = traceparent(msgs[0]).split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01") and span_id != CALLER_SPAN
    assert dict(headers_of(msgs[0]))["tracestate"] == b"vendor=abc"
    assert traceparent(msgs[1]) == traceparent(msgs[0])
    assert dict(headers_of(msgs[1]))["source"] == b"web"
    assert traceparent(msgs[2]) == CLIENT_RECORD_TP
    assert "tracestate" not in dict(headers_of(msgs[2]))

    (server,) = receiver.named("POST /topics/{topic}/records")
    (send,) = receiver.named(f"send {topic}")
    assert (server.kind, server.trace_id, server.parent) == (SERVER, TRACE_ID, CALLER_SPAN)
    assert server.attributes["http.route"] == "/topics/{topic}/records"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.header.x-request-id"] == [request_id]
    # The access log line names the same trace.
    (line,) = [x for x in access_log.parsed() if x["request_id"] == request_id]
    assert line["trace_id"] == TRACE_ID
    # The record's traceparent names the gateway's produce span, a child of the request's span.
    assert (send.kind, send.trace_id, send.span_id, send.parent) == (PRODUCER, TRACE_ID, span_id, server.span_id)
    assert send.attributes == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        "messaging.batch.message_count": 3,
    }
    assert send.status != STATUS_ERROR
    assert send.resource["service.name"] == "kafka-http-gateway"


async def test_ndjson_async_confluent_v2_and_v3_produce_carry_the_trace_too(
    make_client: Callable[..., Any], bootstrap: str, topic: str, receiver: Receiver
) -> None:
    def incoming(n: int) -> str:
        return f"00-{n:032x}-{CALLER_SPAN}-01"

    async with make_client(**tracing_on(receiver)) as client:
        r = await client.post(
            f"/topics/{topic}/records",
            content=b'{"key":"nd","value":1}\n{"key":"nd","value":2}\n',
            headers={"content-type": "application/x-ndjson", "traceparent": incoming(1)},
        )
        assert r.status_code == 200 and "error_code" not in r.text, r.text
        r = await client.post(
            f"/topics/{topic}",
            json={"records": [{"value": {"v": 2}}]},
            headers={"content-type": "application/vnd.kafka.json.v2+json", "traceparent": incoming(2)},
        )
        assert r.status_code == 200, r.text
        cluster = (await client.get("/v3/clusters")).json()["data"][0]["cluster_id"]
        r = await client.post(
            f"/v3/clusters/{cluster}/topics/{topic}/records",
            json={"value": {"type": "JSON", "data": {"v": 3}}},
            headers={"traceparent": incoming(3)},
        )
        assert r.status_code == 200 and r.json()["error_code"] == 200, r.text
        r = await client.post(
            f"/topics/{topic}/records?async=true", json={"value": 4}, headers={"traceparent": incoming(4)}
        )
        assert r.status_code == 202, r.text

    msgs = by_offset(read_all(bootstrap, topic, 5))
    assert len(msgs) == 5
    traces = [traceparent(m).split("-")[1] for m in msgs]
    assert traces == [f"{1:032x}", f"{1:032x}", f"{2:032x}", f"{3:032x}", f"{4:032x}"]
    sends = {s.span_id: s for s in receiver.named(f"send {topic}")}
    for m in msgs:  # each record names an exported produce span of its own request's trace
        _, trace_id, span_id, _ = traceparent(m).split("-")
        assert sends[span_id].trace_id == trace_id
    # async: the span ends once the records are queued, nobody waits for the report.
    assert [s.attributes.get("gateway.produce.async") for s in sends.values() if s.trace_id == f"{4:032x}"] == [True]
    servers = {s.span_id: s for s in receiver.spans if s.kind == SERVER}
    assert {servers[s.parent].attributes["http.route"] for s in sends.values()} == {
        "/topics/{topic}/records",
        "/topics/{topic}",
        "/v3/clusters/{cluster_id}/topics/{topic}/records",
    }


async def test_a_failed_delivery_marks_the_produce_span_an_error(
    make_client: Callable[..., Any], new_topic: Callable[..., str], receiver: Receiver
) -> None:
    # The broker refuses records above the topic's max.message.bytes: a delivery error, not a refusal up front.
    topic = new_topic(1, **{"max.message.bytes": "1000"})
    async with make_client(**tracing_on(receiver)) as client:
        r = await client.post(f"/topics/{topic}/records", json={"value": "x" * 5000}, headers={"traceparent": INCOMING})
        assert r.status_code == 413, r.text
    (send,) = receiver.named(f"send {topic}")
    assert send.status == STATUS_ERROR
    assert send.attributes["error.type"] == "msg_size_too_large"
    assert send.attributes["gateway.produce.failed_records"] == 1
    (server,) = receiver.named("POST /topics/{topic}/records")
    assert server.attributes["http.response.status_code"] == 413 and server.status != STATUS_ERROR


async def test_sampling_is_parent_based(
    make_client: Callable[..., Any], bootstrap: str, topic: str, receiver: Receiver
) -> None:
    async with make_client(**tracing_on(receiver, sample_ratio=0.0)) as client:
        r = await client.post(f"/topics/{topic}/records", json={"key": "new", "value": 1})
        assert r.status_code == 200
        r = await client.post(
            f"/topics/{topic}/records", json={"key": "sampled", "value": 2}, headers={"traceparent": INCOMING}
        )
        assert r.status_code == 200
    new, sampled = by_offset(read_all(bootstrap, topic, 2))
    # A new trace is not sampled at ratio 0, but its context still travels (sampled flag clear), so
    # a consumer joins the same trace and knows not to record it. (Bit 0x02 is W3C level 2's "random".)
    assert sampled_flag(new) == 0 and TRACE_ID not in traceparent(new)
    assert traceparent(sampled).startswith(f"00-{TRACE_ID}-") and sampled_flag(sampled) == 1
    assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
    assert len(receiver.named(f"send {topic}")) == 1


async def test_with_tracing_off_no_trace_header_is_added(
    client: httpx.AsyncClient, bootstrap: str, topic: str, access_log: AccessLines
) -> None:
    r = await client.post(
        f"/topics/{topic}/records",
        json={"records": [{"value": 1}, {"value": 2, "headers": {"h": "v"}}]},
        headers={"traceparent": INCOMING},
    )
    assert r.status_code == 200
    (line,) = [x for x in access_log.parsed() if x["request_id"] == r.headers["x-request-id"]]
    assert "trace_id" not in line
    msgs = by_offset(read_all(bootstrap, topic, 2))
    assert [headers_of(m) for m in msgs] == [[], [("h", b"v")]]


def test_live_gateway_consumers_see_the_trace_and_shutdown_flushes_spans(
    bootstrap: str, topic: str, receiver: Receiver
) -> None:
    env = {
        "GATEWAY_TRACING__ENABLED": "true",
        # Standard OpenTelemetry variables, read by the SDK: endpoint, service name, resource, batch delay.
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        # Long enough that spans can only arrive through the flush at shutdown.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    gw = GatewayProcess(bootstrap, env=env).start()
    try:
        r = httpx.post(
            f"{gw.url}/topics/{topic}/records",
            json={"key": "k", "value": {"n": 1}},
            headers={"traceparent": INCOMING},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        # An SSE consumer gets the trace context among the record's headers ...
        with stream(gw.url, topic, {"from": "earliest"}) as events:
            (event,) = take(events, 1)
        sse_tp = event.data["headers"]["traceparent"]
        assert sse_tp.startswith(f"00-{TRACE_ID}-")
        # ... and so does a stateless read.
        r = httpx.get(f"{gw.url}/topics/{topic}/partitions/0/records", params={"offset": 0}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["records"][0]["headers"]["traceparent"] == sse_tp
        assert receiver.requests == 0
    finally:
        assert gw.stop() in (0, -15)
    (send,) = receiver.named(f"send {topic}")
    assert f"00-{send.trace_id}-{send.span_id}-01" == sse_tp
    assert send.resource["service.name"] == "gateway-under-test"
    assert send.resource["deployment.environment"] == "test"
    (read,) = receiver.named("GET /topics/{topic}/partitions/{partition}/records")
    assert read.attributes["url.query"] == "offset=0"
    # GatewayProcess polled /healthz until it was up: probes are not traced.
    assert not [s for s in receiver.spans if s.attributes.get("url.path") == "/healthz"]


def test_tokens_in_the_query_are_redacted_in_spans(bootstrap: str, topic: str, receiver: Receiver) -> None:
    env = {"GATEWAY_TRACING__ENABLED": "true", "GATEWAY_TRACING__OTLP_ENDPOINT": receiver.base_url + "/v1/traces"}
    with GatewayProcess(bootstrap, env=env) as gw:
        r = httpx.get(f"{gw.url}/topics/{topic}/partitions/0/records?offset=0&access_token=s3cret", timeout=10)
        assert r.status_code == 200, r.text
    (read,) = receiver.named("GET /topics/{topic}/partitions/{partition}/records")
    assert read.attributes["url.query"] == "offset=0&access_token=[redacted]"
    assert "s3cret" not in json.dumps([s.attributes for s in receiver.spans])


def _hide_opentelemetry(tmp_path: Path) -> dict[str, str]:
    """Environment for a gateway process that cannot import the extra (as if never installed)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nfor name in ('opentelemetry.sdk', 'opentelemetry.exporter'):\n    sys.modules[name] = None\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def test_without_the_extra_the_gateway_runs_and_enabling_tracing_fails_in_one_line(
    bootstrap: str, topic: str, tmp_path: Path
) -> None:
    env = _hide_opentelemetry(tmp_path)
    with GatewayProcess(bootstrap, env=env) as gw:
        r = httpx.post(f"{gw.url}/topics/{topic}/records", json={"value": 1}, timeout=10)
        assert r.status_code == 200, r.text
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    run_env.update(env, GATEWAY_TRACING__ENABLED="true", GATEWAY_KAFKA__BOOTSTRAP_SERVERS=bootstrap)
    done = subprocess.run([sys.executable, "-m", "gateway"], env=run_env, capture_output=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("kafka-gateway: configuration error: GATEWAY_TRACING")
    assert "pip install 'kafka-http-gateway[tracing]'" in lines[0]


def test_shutdown_waits_for_a_hanging_collector_only_as_long_as_configured(bootstrap: str, topic: str) -> None:
    hanging = Receiver(delay_s=60)
    env = {
        "GATEWAY_TRACING__ENABLED": "true",
        "GATEWAY_TRACING__OTLP_ENDPOINT": hanging.base_url,
        "GATEWAY_TRACING__SHUTDOWN_TIMEOUT_S": "1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
        "GATEWAY_SHUTDOWN_GRACE_S": "1",
    }
    try:
        gw = GatewayProcess(bootstrap, env=env).start()
        r = httpx.post(f"{gw.url}/topics/{topic}/records", json={"value": 1}, timeout=10)
        assert r.status_code == 200, r.text
        # GatewayProcess.stop kills the process (-9) if SIGTERM has not ended it within its timeout.
        assert gw.stop(timeout_s=20) in (0, -15)
    finally:
        hanging.close()
    assert len(read_all(bootstrap, topic, 1)) == 1


def test_trace_headers_never_replace_or_double_a_records_own() -> None:
    from gateway.tracing import _otlp_url, with_trace_headers

    ours = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"), ("tracestate", b"gw=1")]
    records = [
        (b"v", None, None, -1, 0, 1),
        (b"v", None, [("h", b"x")], -1, 0, 3),
        (b"v", None, [("traceparent", CLIENT_RECORD_TP.encode())], -1, 0, 1),
        (b"v", None, [("tracestate", b"client=1")], -1, 0, 1),
    ]
    out = with_trace_headers(records, ours)
    assert [r[2] for r in out] == [
        ours,
        [("h", b"x"), *ours],
        [("traceparent", CLIENT_RECORD_TP.encode())],
        [("tracestate", b"client=1"), ours[0]],
    ]
    # Sizes (what limits and quotas count) stay the client's.
    assert [r[5] for r in out] == [1, 3, 1, 1]
    assert _otlp_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert _otlp_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert _otlp_url("https://otlp.example.com/custom/traces") == "https://otlp.example.com/custom/traces"


async def test_a_batch_refused_before_kafka_marks_its_produce_span_an_error(
    make_client: Callable[..., Any], bootstrap: str, topic: str, receiver: Receiver
) -> None:
    # A records/s quota: the first batch is admitted, the second refused whole with 429.
    async with make_client(**tracing_on(receiver), quotas={"records_per_s": 2, "burst_s": 1}) as client:
        ok = await client.post(f"/topics/{topic}/records", json={"records": [{"value": 1}, {"value": 2}]})
        assert ok.status_code == 200, ok.text
        refused = await client.post(f"/topics/{topic}/records", json={"records": [{"value": 3}, {"value": 4}]})
        assert refused.status_code == 429, refused.text
    assert len(read_all(bootstrap, topic, 2)) == 2
    sends = receiver.named(f"send {topic}")
    assert sorted(s.status == STATUS_ERROR for s in sends) == [False, True]
    (failed,) = [s for s in sends if s.status == STATUS_ERROR]
    assert failed.attributes["error.type"] == "Backpressure"
