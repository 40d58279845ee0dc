"""``jwt`` mode: HS256/RS256 tokens verified against a key file, a JWKS file or a JWKS URL (API.md §6).

The algorithm is fixed by the settings, and ``exp``, ``iss`` and ``aud`` are required. Tokens are
never logged or echoed; verified ones are cached until they expire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gateway import errors
from gateway.auth.principals import Principal, Scopes
from gateway.auth.watched import WatchedFile
from gateway.settings import AuthSettings

log = logging.getLogger(__name__)


# A JWKS URL is fetched at most this long, and asked again (for an unknown "kid", or after a failure)
# at most this often, or every jwt_jwks_refresh_s if that is shorter.
JWKS_TIMEOUT_S = 5.0
JWKS_MIN_REFETCH_S = 30.0


class RemoteJwks:
    """An identity provider's JWKS, fetched on a thread of its own so the event loop never waits for it.

    Fetched once at start (in the caller's thread); then a request that finds the keys older than
    ``refresh_s``, or a token whose ``kid`` is unknown (a key just rotated in), starts a background
    fetch and goes on with the keys at hand. A failed fetch keeps the previous keys.
    """

    def __init__(self, url: str, refresh_s: float, parse: Callable[[bytes], dict[str | None, Any]]) -> None:
        self.url = url
        self.refresh_s = refresh_s
        self._parse = parse
        self.keys: dict[str | None, Any] = {}
        # Bumped when a fetch brings a different set of keys (the verifier drops its cache then).
        self.generation = 0
        self._fetched = self._attempted = float("-inf")
        self._lock = threading.Lock()
        self._running = False
        self._fetch()

    def _fetch(self) -> None:
        self._attempted = time.monotonic()
        try:
            response = httpx.get(self.url, timeout=JWKS_TIMEOUT_S)
            response.raise_for_status()
            keys = self._parse(response.content)
        except Exception as exc:  # the IdP unreachable, an error status, a document that does not parse
            log.error("JWKS %s not fetched, previous keys kept: %s: %s", self.url, type(exc).__name__, str(exc)[:300])
        else:
            if set(keys) != set(self.keys):
                self.generation += 1
            self.keys, self._fetched = keys, time.monotonic()
        finally:
            with self._lock:
                self._running = False

    def refresh_if_due(self, unknown_kid: bool = False) -> None:
        now = time.monotonic()
        if now - self._attempted < min(JWKS_MIN_REFETCH_S, self.refresh_s):
            return
        if not (unknown_kid or not self.keys or now - self._fetched >= self.refresh_s):
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._fetch, name="jwks-fetch", daemon=True).start()


class JwtVerifier:
    """HS256 or RS256 tokens checked against a key file, a JWKS file or a JWKS URL; verified tokens are cached."""

    def __init__(self, settings: AuthSettings) -> None:
        import jwt  # only jwt mode needs PyJWT and cryptography loaded

        self._jwt = jwt
        self.settings = settings
        self._key: Any = None
        self._jwks: dict[str | None, Any] = {}
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._file: WatchedFile | None = None
        self._remote: RemoteJwks | None = None
        self._generation = 0
        if settings.jwt_jwks_url is not None:
            self._remote = RemoteJwks(settings.jwt_jwks_url, settings.jwt_jwks_refresh_s, self._parse_jwks)
            return
        source = settings.jwt_jwks_file or settings.jwt_key_file
        assert source is not None
        self._file = WatchedFile(source, settings.reload_s)
        self._reload(strict=True)

    def _parse_jwks(self, data: bytes) -> dict[str | None, Any]:
        jwks = self._jwt.PyJWKSet.from_json(data.decode())
        keys: dict[str | None, Any] = {k.key_id: k for k in jwks.keys}
        if len(jwks.keys) == 1:
            keys[None] = jwks.keys[0]  # a token without "kid" may use the only key
        return keys

    def _load(self) -> None:
        s = self.settings
        assert self._file is not None
        data = self._file.path.read_bytes()
        if s.jwt_jwks_file is not None:
            self._jwks = self._parse_jwks(data)
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
        if self._file is None:
            return
        try:
            if self._file.changed(time.monotonic()):
                self._load()
        except Exception as exc:  # any parse error of a key file: keep the old keys (or fail at start)
            if strict:
                raise ValueError(f"JWT key file {self._file.path}: {exc}") from None
            log.error("JWT key file %s not reloaded, previous keys kept: %s", self._file.path, exc)

    def not_ready_reason(self) -> str | None:
        """Why this process cannot verify tokens yet: the identity provider's keys never arrived."""
        remote = self._remote
        if remote is None or remote.keys:
            return None
        remote.refresh_if_due()  # an unready pod gets no requests, so the probe asks for the retry
        return f"the identity provider's JWT signing keys ({remote.url}) have not been fetched yet"

    def authenticate(self, token: str) -> Principal:
        now = time.time()
        s = self.settings
        self._reload()
        remote = self._remote
        if remote is not None:
            remote.refresh_if_due()
            if remote.generation != self._generation:
                # Keys came or went: a token signed by a withdrawn key must not live on in the cache.
                self._generation = remote.generation
                self._cache.clear()
        hit = self._cache.get(token)
        if hit is not None:
            if now <= hit[1] + s.jwt_leeway_s:
                self._cache.move_to_end(token)
                return hit[0]
            del self._cache[token]
        jwt = self._jwt
        try:
            if s.jwt_jwks_file is not None or remote is not None:
                kid = jwt.get_unverified_header(token).get("kid")
                keys = self._jwks if remote is None else remote.keys
                jwk = keys.get(kid if isinstance(kid, str) else None)
                if jwk is None:
                    if remote is not None:
                        remote.refresh_if_due(unknown_kid=True)
                        if not remote.keys:
                            raise errors.Unavailable(
                                "The identity provider's signing keys (JWKS) could not be fetched yet.", 5
                            )
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
