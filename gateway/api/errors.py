"""The one table from domain errors to HTTP status and ``error_code`` (API.md §0).

Every error a client sees, including FastAPI's validation errors and unknown routes, leaves through
here as ``{"error_code": <int>, "message": "<sentence>"}``; FastAPI's ``{"detail": ...}`` never does.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import errors

log = logging.getLogger(__name__)

# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[errors.GatewayError], int, int], ...] = (
    (errors.BadRequest, 400, 40001),
    (errors.Unauthenticated, 401, 40101),
    (errors.Forbidden, 403, 40301),
    (errors.TopicNotFound, 404, 40401),
    (errors.PartitionNotFound, 404, 40402),
    (errors.ConsumerInstanceNotFound, 404, 40403),
    (errors.ConsumerGroupNotFound, 404, 40404),
    (errors.NotFound, 404, 40400),
    (errors.ConsumerInstanceExists, 409, 40902),
    (errors.ConsumerStateConflict, 409, 40903),
    (errors.Conflict, 409, 40901),
    (errors.NotAcceptable, 406, 40601),
    (errors.PayloadTooLarge, 413, 41301),
    (errors.UnsupportedMediaType, 415, 41501),
    (errors.InvalidConsumerConfig, 422, 42204),
    (errors.InvalidRecord, 422, 42201),
    (errors.Backpressure, 429, 42901),
    (errors.Unavailable, 503, 50301),
)


def status_and_code(exc: errors.GatewayError) -> tuple[int, int]:
    for cls, status, code in _TABLE:
        if isinstance(exc, cls):
            return status, code
    return 500, 50001


def error_body(exc: errors.GatewayError) -> dict[str, Any]:
    """The ``{error_code, message}`` object, also used inside batch results."""
    return {"error_code": status_and_code(exc)[1], "message": exc.message}


def retry_headers(exc: errors.GatewayError) -> dict[str, str]:
    if isinstance(exc, errors.RetryLater):
        return {"Retry-After": str(exc.retry_after_s)}
    return {}


def error_response(exc: errors.GatewayError) -> JSONResponse:
    status, code = status_and_code(exc)
    return JSONResponse({"error_code": code, "message": exc.message}, status_code=status, headers=retry_headers(exc))


def _plain(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts) + "."


def install(app: FastAPI) -> None:
    """Register the handlers that keep every error in the ``{error_code, message}`` shape."""

    async def on_gateway_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.GatewayError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # A body FastAPI could not parse as JSON is malformed (400); a parsed one that breaks
        # the schema is 422; a bad query or path parameter is a bad request (400).
        kinds = {e.get("type") for e in exc.errors()}
        locs = {str(e.get("loc", ("",))[0]) for e in exc.errors()}
        if "json_invalid" in kinds or locs != {"body"}:
            return _plain(400, 40001, _describe_validation(exc))
        return _plain(422, 42201, _describe_validation(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = str(exc.detail) if exc.detail else "Request failed."
        if status == 404:
            message = "No such route."
        elif status == 405:
            message = "Method not allowed on this route."
        return _plain(status, status * 100, message, dict(exc.headers or {}))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _plain(500, 50001, "Internal error; the request may be retried.")

    app.add_exception_handler(errors.GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
