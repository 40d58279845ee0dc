"""openapi/openapi.json is what the app serves; regenerate with `make openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.openapi import render

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_served_one() -> None:
    assert json.loads(SPEC.read_text()) == json.loads(render()), "openapi/openapi.json is stale: run `make openapi`"


def test_every_operation_documents_its_errors_in_the_error_shape() -> None:
    spec = json.loads(render())
    assert spec["components"]["schemas"]["Error"]["required"] == ["error_code", "message"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = {c for c in op["responses"] if c.startswith(("4", "5"))}
            if path not in ("/healthz", "/metrics"):
                assert codes, f"{method.upper()} {path} documents no error response"
            assert "HTTPValidationError" not in json.dumps(op), f"{method.upper()} {path} leaks FastAPI's shape"
