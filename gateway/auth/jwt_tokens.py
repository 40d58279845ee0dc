"""``jwt`` mode: HS256/RS256 tokens verified against a key or JWKS file (API.md §6).

The algorithm is fixed by the settings, and ``exp``, ``iss`` and ``aud`` are required. Tokens are
never logged or echoed; verified ones are cached until they expire.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from gateway import errors
from gateway.auth.principals import Principal, Scopes
from gateway.auth.watched import WatchedFile
from gateway.settings import AuthSettings

log = logging.getLogger(__name__)


class JwtVerifier:
    """HS256 or RS256 tokens checked against a key file or a JWKS file; verified tokens are cached."""

    def __init__(self, settings: AuthSettings) -> None:
        import jwt  # only jwt mode needs PyJWT and cryptography loaded

        self._jwt = jwt
        self.settings = settings
        source = settings.jwt_jwks_file or settings.jwt_key_file
        assert source is not None
        self._file = WatchedFile(source, settings.reload_s)
        self._key: Any = None
        self._jwks: dict[str | None, Any] = {}
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._reload(strict=True)

    def _load(self) -> None:
        s = self.settings
        data = self._file.path.read_bytes()
        if s.jwt_jwks_file is not None:
            jwks = self._jwt.PyJWKSet.from_json(data.decode())
            keys: dict[str | None, Any] = {k.key_id: k for k in jwks.keys}
            if len(jwks.keys) == 1:
                keys[None] = jwks.keys[0]  # a token without "kid" may use the only key
            self._jwks = keys
        elif s.jwt_algorithm == "HS256":
            secret = data.strip()
            if len(secret) < 32:
                raise ValueError("an HS256 secret needs at least 32 bytes (RFC 7518 §3.2)")
            self._key = secret
        else:
            from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            key = load_pem_public_key(data)
            if not isinstance(key, RSAPublicKey):
                raise ValueError("RS256 needs a PEM RSA public key")
            self._key = key
        self._cache.clear()

    def _reload(self, strict: bool = False) -> None:
        try:
            if self._file.changed(time.monotonic()):
                self._load()
        except Exception as exc:  # any parse error of a key file: keep the old keys (or fail at start)
            if strict:
                raise ValueError(f"JWT key file {self._file.path}: {exc}") from None
            log.error("JWT key file %s not reloaded, previous keys kept: %s", self._file.path, exc)

    def authenticate(self, token: str) -> Principal:
        now = time.time()
        s = self.settings
        self._reload()
        hit = self._cache.get(token)
        if hit is not None:
            if now <= hit[1] + s.jwt_leeway_s:
                self._cache.move_to_end(token)
                return hit[0]
            del self._cache[token]
        jwt = self._jwt
        try:
            if s.jwt_jwks_file is not None:
                kid = jwt.get_unverified_header(token).get("kid")
                jwk = self._jwks.get(kid if isinstance(kid, str) else None)
                if jwk is None:
                    raise errors.Unauthenticated("Invalid token: unknown signing key.")
                key = jwk.key
            else:
                key = self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=[s.jwt_algorithm],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise errors.Unauthenticated("Token expired.") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check (signature, audience, ...), never the token.
            raise errors.Unauthenticated(f"Invalid token: {_reason(exc)}.") from None
        name = claims.get(s.jwt_principal_claim)
        if not isinstance(name, str) or not name:
            raise errors.Unauthenticated(f"Invalid token: no '{s.jwt_principal_claim}' claim.")
        principal = Principal(name, Scopes.parse(_claim_scopes(claims, s.jwt_scope_claim)))
        if s.jwt_cache_size > 0:
            self._cache[token] = (principal, float(claims["exp"]))
            while len(self._cache) > s.jwt_cache_size:
                self._cache.popitem(last=False)
        return principal


def _reason(exc: Exception) -> str:
    text = str(exc).rstrip(".") or type(exc).__name__
    return text[:120]


def _claim_scopes(claims: Mapping[str, Any], path: str) -> list[str]:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
