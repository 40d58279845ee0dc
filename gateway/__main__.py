"""``kafka-gateway`` / ``python -m gateway``: read settings, then serve with uvicorn.

A bad setting stops start-up with one line naming the variable, not a traceback.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys

import uvicorn
from pydantic import ValidationError

from gateway.settings import Settings

# Objects allocated before a young collection; young collections per middle one; middle per full.
GC_THRESHOLDS = (10_000, 20, 100)


def _config_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        var = "GATEWAY_" + "__".join(loc).upper() if loc else "GATEWAY_*"
        # The offending value is not echoed: it may be a password (GATEWAY_KAFKA__SASL_PASSWORD).
        parts.append(f"{var}: {err.get('msg')}")
    return "kafka-gateway: configuration error: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(_config_error(exc), file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gateway.app import create_app

    app = create_app(settings)
    # What exists now (modules, routes, schemas: ~70,000 objects) lives as long as the process. Out of
    # the cyclic collector's sight, a full collection takes ~0 ms instead of ~70 ms (measured) during
    # which the event loop, and with it every request and stream, stands still.
    importlib.import_module("uvicorn.loops.uvloop")
    importlib.import_module("uvicorn.protocols.http.httptools_impl")
    gc.collect()
    gc.freeze()
    # Python's default thresholds (700, 10, 10) ran 12 full collections, 11 s of stalls in all, while
    # 10,000 SSE subscribers connected (bench/RESULTS.md): per-connection objects outlive the young
    # generations and each full pass rescans every subscriber. Fewer, larger young collections let
    # short-lived objects die uncounted; measured: 1 full collection, 2.5 s in all. Garbage cycles
    # are still collected, only later.
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_grace_s)),
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
