"""``create_app(settings)``: the FastAPI application. No resources at import; the lifespan owns them."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from gateway import __version__, observability, tracing
from gateway.api import admin as admin_api
from gateway.api import confluent_v2, confluent_v3, consume, errors, health, produce, reads, security
from gateway.api.produce_openapi import SCHEMAS as PRODUCE_SCHEMAS
from gateway.api.security_openapi import document as document_security
from gateway.lifespan import lifespan_for
from gateway.metrics import Metrics
from gateway.settings import Settings

DESCRIPTION = """\
REST and server-sent-event access to Apache Kafka. Every error is `{"error_code", "message"}`;
`error_code` is the HTTP status times 100 plus a small number (see the README's error table).
"""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "integer", "example": 40401},
        "message": {"type": "string", "example": "Topic 'orders' not found."},
    },
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    tracer = tracing.Tracing(settings.tracing) if settings.tracing.enabled else None
    app = FastAPI(
        title="Kafka HTTP gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan_for(settings, metrics, tracer),
        # Backstop of gateway/api/security.py: no handler runs for a request its middleware did not pass.
        dependencies=[Depends(security.vetted)],
        # FastAPI's own telemetry stays off, tracing on or not: its request spans (made as soon as some
        # library sets a global provider) would duplicate the gateway's SERVER span and record the raw
        # query, access_token included; metrics are Prometheus' (/metrics); and its per-request check
        # for a provider costs every request some CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(health.router)
    app.include_router(produce.router)
    app.include_router(consume.router)
    app.include_router(reads.router)
    app.include_router(admin_api.router)
    app.include_router(confluent_v2.router)
    app.include_router(confluent_v3.router)
    # Security first, so observability ends up outermost and logs refusals too.
    security.install(app, settings, metrics)
    observability.install(app, settings, metrics)
    if tracer is not None:  # outermost: its span covers everything the gateway does with the request
        tracing.install(app, tracer)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Error"] = ERROR_SCHEMA
            components.update(PRODUCE_SCHEMAS["components"])
            # FastAPI's own validation shapes never reach a client; errors.install maps them.
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    resp = op.get("responses", {})
                    if "422" in resp and "HTTPValidationError" in str(resp["422"]):
                        # FastAPI documents 422 for every declared parameter, but errors.install
                        # answers a bad path, query or header parameter with 400 (and only a body
                        # that breaks its schema with 422): document what a client really gets.
                        del resp["422"]
                        if "requestBody" in op:
                            resp["422"] = {"description": "Body breaks its schema", "content": error_content}
                        resp.setdefault(
                            "400", {"description": "Bad path, query or header parameter", "content": error_content}
                        )
            document_security(schema, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
