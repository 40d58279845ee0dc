"""Liveness and readiness (API.md §5)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import RuntimeDep
from gateway.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process is up and its Kafka producer usable",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok"}}}},
        503: {
            "description": "The producer hit a fatal error; restart the process",
            "content": {"application/json": {"example": {"error_code": 50302, "message": "producer failed: ..."}}},
        },
    },
)
async def healthz(rt: RuntimeDep) -> JSONResponse:
    # Kafka being down is not a liveness failure (readiness says that); a producer that librdkafka
    # declared fatally broken is, since only a restart brings it back.
    fatal = rt.producer.fatal_error
    if fatal is not None:
        return JSONResponse(
            {"error_code": 50302, "message": f"Kafka producer failed for good: {fatal}"}, status_code=503
        )
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: Kafka metadata fetched recently, not draining, JWT keys at hand (jwt mode)",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready"}}}},
        503: {
            "description": "Not ready; the message says why",
            "content": {
                "application/json": {"example": {"error_code": 50301, "message": "Kafka metadata is 42 s old"}}
            },
        },
    },
)
async def readyz(request: Request, rt: RuntimeDep) -> JSONResponse:
    reason = rt.not_ready_reason() or request.app.state.authenticator.not_ready_reason()
    if reason is not None:
        return JSONResponse({"error_code": 50301, "message": reason}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"example": 'gateway_records_produced_total{topic="orders"} 42.0'}}}},
)
async def metrics(rt: RuntimeDep) -> Response:
    rt.metrics.producer_queue.set(rt.producer.in_flight_records)
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
