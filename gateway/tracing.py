"""OpenTelemetry tracing (optional extra ``kafka-http-gateway[tracing]``; off unless ``GATEWAY_TRACING__ENABLED``).

Two kinds of span, and the W3C trace context carried across Kafka:

* ``TracingMiddleware``: one SERVER span per HTTP request, named by method and route template
  (``POST /topics/{topic}/records``), continuing the client's ``traceparent``/``tracestate`` (through
  the global propagator, so ``OTEL_PROPAGATORS`` is honoured). Status 5xx or an exception marks it
  an error. The query is logged as the access log does, credentials (``access_token``) redacted.
* ``TracedPublisher``: one PRODUCER span per ``Publisher.submit`` (a request, an NDJSON chunk, a
  Confluent v3 group), a child of the request's span, ``send {topic}`` with the messaging semantic
  conventions. It ends when the batch's last delivery report is in (error status if any record
  failed), or right after the hand-off for ``async`` produce, which waits for no report.
  Every record of the batch gets that span's context as a ``traceparent`` header (``tracestate``
  too when non-empty), unless it carries a ``traceparent`` header of its own: the client's wins.
  So a consumer of the topic continues the trace from the gateway's produce span.

Why not FastAPI's own telemetry (0.165 has it): it records the query string with only cloud-signature
parameters redacted (an EventSource's ``access_token`` would land in the trace backend) and adds spans
per dependency and endpoint; ``create_app`` turns its tracing off while this is on, so there is one
SERVER span per request. opentelemetry-instrumentation-asgi would be one more (beta) dependency.

Zero cost when off: ``create_app`` installs neither the middleware nor the publisher, and nothing
here imports the OpenTelemetry SDK until ``Tracing.start`` runs in the lifespan. The provider is the
gateway's own, never the global one, so libraries that look for a global provider stay silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway import __version__, errors
from gateway.kafka.metadata import MetadataCache, TopicInfo
from gateway.kafka.producer import Batch, GatewayProducer, Prepared
from gateway.observability import TRACE_ID_SCOPE_KEY, UNMATCHED_ROUTE, Message, Receive, Scope, Send, safe_query
from gateway.quotas import MeteredPublisher
from gateway.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

    from gateway.observability import ASGIApp

log = logging.getLogger(__name__)

__all__ = ["TRACEPARENT", "TRACESTATE", "TracedPublisher", "Tracing", "TracingMiddleware", "install"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DEFAULT_SERVICE_NAME = "kafka-http-gateway"
# OTLP/HTTP's path for traces, appended to an endpoint given without a path.
OTLP_TRACES_PATH = "/v1/traces"
_REQUEST_ID = b"x-request-id"


def _otlp_url(endpoint: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces``; a URL with a path is kept."""
    _, sep, rest = endpoint.partition("://")
    if sep and "/" not in rest.rstrip("/"):
        return endpoint.rstrip("/") + OTLP_TRACES_PATH
    return endpoint


class Tracing:
    """The gateway's tracer provider: built by ``create_app`` (no threads), started and closed by the lifespan."""

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        # None until ``start``: the middleware passes requests through untouched until then.
        self.tracer: Tracer | None = None
        self._provider: TracerProvider | None = None
        self._processor: SpanProcessor | None = None
        # OpenTelemetry names, bound at ``start`` so this module imports without the extra.
        self.otel: Any = None

    def start(self) -> None:
        """Build the provider, sampler, resource and exporter (reading the standard OTEL_* variables)."""
        if self.tracer is not None:
            return
        from opentelemetry import propagate, trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, StatusCode

        s = self.settings
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES apply; the setting wins, then our default name.
        resource = Resource.create({SERVICE_NAME: s.service_name} if s.service_name else {})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # No ratio set: the SDK reads OTEL_TRACES_SAMPLER(_ARG), by default parent-based always-on.
        sampler = None if s.sample_ratio is None else ParentBased(TraceIdRatioBased(s.sample_ratio))
        provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        exporter: SpanExporter | None = None
        if s.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # No endpoint set: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else http://localhost:4318/v1/traces.
            # Headers, timeout, compression and TLS files come from OTEL_EXPORTER_OTLP_* as well.
            exporter = OTLPSpanExporter(endpoint=_otlp_url(s.otlp_endpoint) if s.otlp_endpoint else None)
        elif s.exporter == "console":
            exporter = ConsoleSpanExporter()
        if exporter is not None:
            # Queue size, batch size and delay from OTEL_BSP_*; a full queue drops spans, never blocks.
            self._processor = BatchSpanProcessor(exporter)
            provider.add_span_processor(self._processor)
        self._provider = provider
        self.otel = _Names(propagate, trace, SpanKind, StatusCode)
        self.tracer = provider.get_tracer("gateway", __version__)
        log.info(
            "tracing on: exporter %s, service %s",
            s.exporter,
            resource.attributes.get(SERVICE_NAME, DEFAULT_SERVICE_NAME),
        )

    def close(self) -> None:
        """Export what is queued and stop the processor's thread. Blocking: see ``aclose``."""
        provider, processor = self._provider, self._processor
        self.tracer = None
        self._provider = self._processor = None
        if processor is not None:
            processor.shutdown()
        if provider is not None:
            provider.shutdown()

    async def aclose(self) -> None:
        """``close`` within ``shutdown_timeout_s``; spans not exported by then are dropped.

        The SDK's own shutdown may wait 30 s (and its flush ignores a timeout), so it runs on a
        daemon thread of its own: not the Kafka executor, whose threads the interpreter joins at exit.
        """
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            if not finished.done():
                finished.set_result(None)

        def run() -> None:
            try:
                self.close()
            except Exception:
                log.warning("tracing: shutdown failed", exc_info=True)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone already
                    loop.call_soon_threadsafe(done)

        threading.Thread(target=run, name="tracing-shutdown", daemon=True).start()
        timeout = self.settings.shutdown_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout)
        except TimeoutError:
            log.warning("tracing: spans not exported within %.1f s at shutdown were dropped", timeout)

    def publisher(self, producer: GatewayProducer, metadata: MetadataCache) -> TracedPublisher:
        """The runtime's publisher when tracing is on (quotas included, as without tracing)."""
        pub = TracedPublisher(producer, metadata)
        pub.tracing = self
        return pub


class _Names:
    """The few OpenTelemetry names the per-request code needs, imported once by ``Tracing.start``."""

    __slots__ = ("ERROR", "PRODUCER", "SERVER", "attach", "detach", "extract", "set_span_in_context")

    def __init__(self, propagate: Any, trace: Any, span_kind: Any, status_code: Any) -> None:
        from opentelemetry import context

        self.SERVER = span_kind.SERVER
        self.PRODUCER = span_kind.PRODUCER
        self.ERROR = status_code.ERROR
        self.extract = propagate.extract
        self.set_span_in_context = trace.set_span_in_context
        self.attach = context.attach
        self.detach = context.detach


# -- HTTP ------------------------------------------------------------------------------------------


def _header_carrier(scope: Scope) -> dict[str, str]:
    # The propagator reads trace headers by lower-case name; ASGI header names already are.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


class TracingMiddleware:
    """A SERVER span per HTTP request (pure ASGI: no task, no Request object)."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        self.excluded = frozenset(tracing.settings.exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracing.tracer
        if tracer is None or scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        otel = self.tracing.otel
        carrier = _header_carrier(scope)
        parent = otel.extract(carrier)
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "url.path": scope["path"],
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        query = scope.get("query_string", b"")
        if query:
            attributes["url.query"] = safe_query(query)
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        host = carrier.get("host")
        if host:
            name, sep, port = host.rpartition(":")
            if sep and port.isdigit():  # "[::1]" alone has no port: its last colon is inside the brackets
                attributes["server.address"], attributes["server.port"] = name, int(port)
            else:
                attributes["server.address"] = host
        agent = carrier.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        # Named by method only until routing tells the template (a raw path would explode cardinality).
        span = tracer.start_span(method, context=parent, kind=otel.SERVER, attributes=attributes)
        scope[TRACE_ID_SCOPE_KEY] = format(span.get_span_context().trace_id, "032x")
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                for name, value in message.get("headers", ()):
                    if name == _REQUEST_ID:  # ties the span to the access log line
                        span.set_attribute("http.response.header.x-request-id", (bytes(value).decode("latin-1"),))
                        break
            await send(message)

        token = otel.attach(otel.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(otel.ERROR, type(exc).__name__)
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            otel.detach(token)
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            else:
                span.update_name(f"{method} {UNMATCHED_ROUTE}")
            if status >= 500:
                span.set_status(otel.ERROR)
                span.set_attribute("error.type", str(status))
            span.end()


def install(app: Any, tracing: Tracing) -> None:
    """Add the middleware outermost, so refusals by security and its own errors are traced too."""
    app.add_middleware(TracingMiddleware, tracing=tracing)


# -- produce ---------------------------------------------------------------------------------------


def _traceparent(span: Span) -> list[tuple[str, bytes]] | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:  # OTEL_SDK_DISABLED and the like: nothing to propagate
        return None
    headers = [(TRACEPARENT, b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, ctx.trace_flags))]
    state = ctx.trace_state.to_header()
    if state:
        headers.append((TRACESTATE, state.encode()))
    return headers


def with_trace_headers(records: Sequence[Prepared], trace_headers: list[tuple[str, bytes]]) -> list[Prepared]:
    """Each record with the trace headers appended, unless it has a ``traceparent`` of its own.

    The record's ``size`` stays what the client sent: quotas and limits count the client's bytes.
    The same header list is shared by records without headers; librdkafka copies it on produce.
    """
    has_state = len(trace_headers) > 1
    out: list[Prepared] = []
    append = out.append
    for rec in records:
        headers = rec[2]
        if headers is None:
            append((rec[0], rec[1], trace_headers, rec[3], rec[4], rec[5]))
        elif any(name == TRACEPARENT for name, _ in headers):
            append(rec)
        else:
            extra = trace_headers
            if has_state and any(name == TRACESTATE for name, _ in headers):
                extra = trace_headers[:1]
            append((rec[0], rec[1], headers + extra, rec[3], rec[4], rec[5]))
    return out


class TracedPublisher(MeteredPublisher):
    """The publisher used when tracing is on: a PRODUCER span per batch and trace headers on its records."""

    tracing: Tracing

    def submit(self, topic: TopicInfo, records: Sequence[Prepared], *args: Any, **kwargs: Any) -> Batch:
        tracer = self.tracing.tracer
        if tracer is None:
            return super().submit(topic, records, *args, **kwargs)
        otel = self.tracing.otel
        n = len(records)
        span = tracer.start_span(
            f"send {topic.name}",
            kind=otel.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic.name,
                "messaging.batch.message_count": n,
            },
        )
        trace_headers = _traceparent(span)
        if trace_headers is not None:
            records = with_trace_headers(records, trace_headers)
        try:
            batch = super().submit(topic, records, *args, **kwargs)
        except errors.GatewayError as exc:  # refused whole: queue full, quota, shutting down
            _fail(span, otel, type(exc).__name__, exc.message)
            span.end()
            raise
        pre_failed = frozenset(i for i, _ in kwargs.get("failed", ()))
        if batch.future is None:  # async produce: nobody waits for the reports, nor does the span
            span.set_attribute("gateway.produce.async", True)
            _finish(span, otel, batch, n, pre_failed)
        else:
            batch.future.add_done_callback(lambda fut: _finish(span, otel, batch, n, pre_failed, fut.cancelled()))
        return batch


def _fail(span: Span, otel: Any, error_type: str, description: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(otel.ERROR, description)


def _finish(
    span: Span, otel: Any, batch: Batch, total: int, pre_failed: frozenset[int], cancelled: bool = False
) -> None:
    """End the produce span; an error if a record failed at the producer or the broker.

    Records that failed validation before the batch (NDJSON lines, ``pre_failed``) are the client's
    error and the request span's story, not a failed send.
    """
    refused = [i for i in batch.refused if i not in pre_failed] if batch.refused else []
    failed = batch.failed + len(refused)
    if failed > 0 and not cancelled:
        # librdkafka's error name, as the delivery-error metric counts them; else the refusal's class.
        names = batch.error_names
        kind = next(iter(names)) if names else type(batch.results[refused[-1]]).__name__
        span.set_attribute("gateway.produce.failed_records", failed)
        _fail(span, otel, kind, f"{failed} of {total} records not delivered")
    span.end()
