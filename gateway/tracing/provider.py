"""The gateway's own tracer provider: built by ``create_app``, started and shut down (bounded) by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.producer import GatewayProducer
from gateway.settings import TracingSettings
from gateway.tracing.publisher import TracedPublisher

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Tracer

# The logger's name from before the split into a package, which logging configurations may name.
log = logging.getLogger("gateway.tracing")

DEFAULT_SERVICE_NAME = "kafka-http-gateway"
# OTLP/HTTP's path for traces, appended to an endpoint given without a path.
OTLP_TRACES_PATH = "/v1/traces"


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

    def publisher(
        self, producer: GatewayProducer, metadata: MetadataCache, auto_create: Callable[[str], Awaitable[None]] | None
    ) -> TracedPublisher:
        """The runtime's publisher when tracing is on (quotas included, as without tracing)."""
        pub = TracedPublisher(producer, metadata, auto_create)
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
