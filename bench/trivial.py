"""The HTTP ceiling: a trivial FastAPI POST endpoint served exactly like the gateway.

Same route shape as the gateway's produce route, same JSON decoder (msgspec), same uvicorn settings
(uvloop, httptools, one worker, no access log). It parses the body and answers a small JSON object,
so the gap between it and the gateway is what producing to Kafka costs.

``python -m bench.trivial`` listens on ``GATEWAY_HOST``:``GATEWAY_PORT`` like the gateway.
"""

from __future__ import annotations

import os

import msgspec
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def create_app() -> FastAPI:
    app = FastAPI(title="trivial")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/topics/{topic}/records")
    async def records(topic: str, request: Request) -> Response:
        _decode(await request.body())
        return Response(
            _encode({"topic": topic, "partition": 0, "offset": 0, "timestamp": 0}), media_type="application/json"
        )

    return app


def main() -> None:
    uvicorn.run(
        create_app,
        factory=True,
        host=os.environ.get("GATEWAY_HOST", "127.0.0.1"),
        port=int(os.environ.get("GATEWAY_PORT", "8081")),
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
