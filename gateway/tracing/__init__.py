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

One module a concept: ``provider`` (``Tracing``: the tracer provider's setup and shutdown),
``middleware`` (the SERVER span per request), ``publisher`` (the PRODUCER span and trace headers).
"""

from __future__ import annotations

from gateway.tracing.middleware import TracingMiddleware, install
from gateway.tracing.provider import Tracing
from gateway.tracing.provider import _otlp_url as _otlp_url
from gateway.tracing.publisher import TRACEPARENT, TRACESTATE, TracedPublisher
from gateway.tracing.publisher import with_trace_headers as with_trace_headers

# ``_otlp_url`` and ``with_trace_headers`` are not in __all__ but importable from here, as before the split.
__all__ = ["TRACEPARENT", "TRACESTATE", "TracedPublisher", "Tracing", "TracingMiddleware", "install"]
