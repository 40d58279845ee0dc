"""OpenAPI for the security middleware: the bearer scheme, each operation's scope and its refusals."""

from __future__ import annotations

from typing import Any

from fastapi.routing import iter_route_contexts

from gateway.api.security import ACCESS_TOKEN
from gateway.auth.policy import Access, classify

_ERR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_DOC_RESPONSES = {
    "401": ("Missing or invalid credentials (auth on); see WWW-Authenticate", 40101, "Missing credentials."),
    "403": ("The principal lacks the scope this route needs for this topic", 40301, "Principal 'web' may not ..."),
}


def document(schema: dict[str, Any], routes: list[Any]) -> None:
    """Add the bearer scheme, each operation's scope requirement, and its 401/403/429 answers."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key or a JWT, per the gateway's auth mode. SSE also takes `access_token`.",
    }
    for route in iter_route_contexts(routes):
        path_ops = schema.get("paths", {}).get(route.path_format)
        if not path_ops:
            continue
        for method in route.methods or ():
            op = path_ops.get(method.lower())
            if op is None:
                continue
            rule = classify(method, route.path or "", getattr(route, "tags", None) or ())
            if rule is None or rule.access is Access.OPEN:
                continue
            op["security"] = [{"bearer": []}]
            needs = {
                Access.AUTHENTICATED: "any authenticated principal",
                Access.READ: f"scope `read:<glob>` matching `{{{rule.topic_param}}}`",
                Access.WRITE: f"scope `write:<glob>` matching `{{{rule.topic_param}}}` (a record also gets 403 "
                "40301 when Kafka's ACLs refuse the gateway's own user Write on the topic)",
                Access.ADMIN: "scope `admin`",
                Access.CONSUMER: "the instance's creator; `read` on every topic the body names; the group "
                "must match the principal's `group:` scopes, if it has any (a fetch also gets 403 40301 when "
                "Kafka's ACLs refuse the gateway's own user Read on the group or a topic)",
            }[rule.access]
            op["description"] = (op.get("description") or "").rstrip() + f"\n\nAuthorization: {needs}."
            responses = op.setdefault("responses", {})
            for status, (text, code, message) in _DOC_RESPONSES.items():
                responses.setdefault(
                    status,
                    {"description": text, "content": {"application/json": {**_ERR_REF["application/json"],
                     "example": {"error_code": code, "message": message}}}},
                )  # fmt: skip
            if rule.stream or rule.access is Access.WRITE:
                responses.setdefault("429", {"description": "Quota exceeded; see Retry-After", "content": _ERR_REF})
            if rule.stream and not any(p.get("name") == ACCESS_TOKEN for p in op.get("parameters", [])):
                op.setdefault("parameters", []).append(
                    {
                        "name": ACCESS_TOKEN,
                        "in": "query",
                        "required": False,
                        "description": "The credential, for EventSource clients that cannot set Authorization",
                        "schema": {"type": "string"},
                    }
                )
