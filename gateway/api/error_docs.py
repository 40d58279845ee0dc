"""OpenAPI ``responses`` entries for errors: each one points at the shared ``Error`` schema.

The schema itself (``{"error_code", "message"}``) is added to the spec in ``gateway.app``.
"""

from __future__ import annotations

from typing import Any

ERROR_CONTENT = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def errs(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for ``(status, description)`` pairs, each answered with an Error body."""
    return {status: {"description": text, **ERROR_CONTENT} for status, text in codes}
