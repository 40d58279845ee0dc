"""Who is calling, and may they? Principals, credentials, scopes and the route policy (API.md §6).

Pure logic, no HTTP: ``gateway.api.security`` applies it to every request in one place.

- **Credentials** are ``Authorization: Bearer <token>`` (SSE also takes ``access_token``, since
  ``EventSource`` cannot set headers). ``api-key`` mode looks the token's SHA-256 up in a key file
  (``gateway.auth.api_keys``); ``jwt`` mode verifies an HS256/RS256 token against a key or JWKS file,
  with a fixed algorithm, and requires ``exp``, ``iss`` and ``aud`` (``gateway.auth.jwt_tokens``).
  Tokens are never logged, echoed or kept on disk.
- **Scopes** and principals: ``gateway.auth.principals``.
- **The route policy** (``RULES``) classifies every route by method and path template
  (``gateway.auth.policy``); a route missing from it is denied to everyone.

This module turns a request's credential into a ``Principal`` according to the configured mode.
"""

from __future__ import annotations

from gateway import errors
from gateway.auth.api_keys import ApiKeys
from gateway.auth.jwt_tokens import JwtVerifier
from gateway.auth.principals import ANONYMOUS, Principal
from gateway.settings import AuthSettings


class Authenticator:
    """Turns the credential of a request into a ``Principal`` according to the configured mode."""

    def __init__(self, settings: AuthSettings) -> None:
        self.mode = settings.mode
        self._keys = ApiKeys(settings) if settings.mode == "api-key" else None
        self._jwt = JwtVerifier(settings) if settings.mode == "jwt" else None

    def not_ready_reason(self) -> str | None:
        """Why requests cannot be authenticated yet (``/readyz``), or ``None``."""
        return self._jwt.not_ready_reason() if self._jwt is not None else None

    def authenticate(self, token: str | None) -> Principal:
        if self.mode == "none":
            return ANONYMOUS
        if not token:
            raise errors.Unauthenticated("Missing credentials: send 'Authorization: Bearer <token>'.")
        if self._keys is not None:
            return self._keys.authenticate(token)
        assert self._jwt is not None
        return self._jwt.authenticate(token)


def bearer(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
