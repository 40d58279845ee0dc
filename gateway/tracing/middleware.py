"""A SERVER span per HTTP request: pure ASGI middleware, named by the route template once routing has run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.observability import TRACE_ID_SCOPE_KEY, UNMATCHED_ROUTE, Message, Receive, Scope, Send, safe_query

if TYPE_CHECKING:
    from gateway.observability import ASGIApp
    from gateway.tracing.provider import Tracing

_REQUEST_ID = b"x-request-id"


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
