"""Who is calling, and may they? Principals, credentials, scopes and the route policy (API.md §6).

Pure logic, no HTTP: ``gateway.api.security`` applies it to every request in one place.

- **Credentials** are ``Authorization: Bearer <token>`` (SSE also takes ``access_token``, since
  ``EventSource`` cannot set headers). ``api-key`` mode looks the token's SHA-256 up in a key file;
  ``jwt`` mode verifies an HS256/RS256 token against a key or JWKS file, with a fixed algorithm,
  and requires ``exp``, ``iss`` and ``aud``. Tokens are never logged, echoed or kept on disk.
- **Scopes** are ``read:<topic glob>``, ``write:<topic glob>`` and ``admin`` (``fnmatch`` globs, case
  sensitive like topic names). ``admin`` does not imply reading or writing data: a superuser has
  ``admin read:* write:*``. Unknown scopes (``openid`` and the like) are ignored.
- **The route policy** (``RULES``) classifies every route by method and path template. A route
  missing from it is denied to everyone, so a new route cannot be reached until someone decides
  who may call it; ``tests/unit/test_auth_policy.py`` fails while any registered route is unclassified.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import re
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import msgspec

from gateway import errors
from gateway.quotas import Limits
from gateway.settings import AuthSettings

log = logging.getLogger(__name__)


# -- scopes and principals ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scopes:
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    admin: bool = False

    @classmethod
    def parse(cls, items: Iterable[str]) -> Scopes:
        read: list[str] = []
        write: list[str] = []
        admin = False
        for item in items:
            kind, _, glob = item.partition(":")
            if kind == "read" and glob:
                read.append(glob)
            elif kind == "write" and glob:
                write.append(glob)
            elif item == "admin":
                admin = True
        return cls(tuple(read), tuple(write), admin)

    def can_read(self, topic: str) -> bool:
        return any(fnmatchcase(topic, glob) for glob in self.read)

    def can_write(self, topic: str) -> bool:
        return any(fnmatchcase(topic, glob) for glob in self.write)

    @property
    def reads_everything(self) -> bool:
        return "*" in self.read


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``name`` is safe to log; nothing here is a secret."""

    name: str
    scopes: Scopes
    # Per-principal quota overrides from the key file; ``None`` fields fall back to the settings.
    limits: Limits | None = None


ANONYMOUS = Principal("anonymous", Scopes(("*",), ("*",), True))


# -- the route policy --------------------------------------------------------------------------


class Access(enum.Enum):
    OPEN = "open"  # no credentials at all: health, metrics, the contract
    AUTHENTICATED = "authenticated"  # any principal: listings that name topics or clusters
    READ = "read"  # read:<glob> matching the topic in the path
    WRITE = "write"  # write:<glob> matching the topic in the path
    ADMIN = "admin"  # the admin scope
    CONSUMER = "consumer"  # Confluent consumer instances: read on every topic the body names; owner only


@dataclass(frozen=True, slots=True)
class Rule:
    access: Access
    # Name of the path parameter holding the topic (READ and WRITE).
    topic_param: str | None = None
    # Long-lived response counted against the principal's concurrent-stream quota; takes access_token.
    stream: bool = False
    # A Confluent consumer instance's route (first two path parameters: group, instance): owner only.
    owned: bool = False


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
# (method, template with every parameter written "{}") -> (access, index of the topic parameter, stream)
RULES: dict[tuple[str, str], tuple[Access, int | None, bool]] = {
    # operations (API.md §5)
    ("GET", "/healthz"): (Access.OPEN, None, False),
    ("GET", "/readyz"): (Access.OPEN, None, False),
    ("GET", "/metrics"): (Access.OPEN, None, False),
    ("GET", "/openapi.json"): (Access.OPEN, None, False),
    ("GET", "/docs"): (Access.OPEN, None, False),
    ("GET", "/docs/oauth2-redirect"): (Access.OPEN, None, False),
    ("GET", "/redoc"): (Access.OPEN, None, False),
    # native produce and consume (§1, §2)
    ("POST", "/topics/{}/records"): (Access.WRITE, 0, False),
    ("GET", "/topics/{}/events"): (Access.READ, 0, True),
    ("GET", "/topics/{}/partitions/{}/records"): (Access.READ, 0, False),
    ("GET", "/topics/{}/offsets"): (Access.READ, 0, False),
    # admin (§4) and Confluent v2 metadata (§3) share these templates
    ("GET", "/topics"): (Access.AUTHENTICATED, None, False),
    ("POST", "/topics"): (Access.ADMIN, None, False),
    ("GET", "/topics/{}"): (Access.READ, 0, False),
    ("DELETE", "/topics/{}"): (Access.ADMIN, None, False),
    ("GET", "/cluster"): (Access.ADMIN, None, False),
    # Confluent v2 produce and metadata (§3)
    ("POST", "/topics/{}"): (Access.WRITE, 0, False),
    ("POST", "/topics/{}/partitions/{}"): (Access.WRITE, 0, False),
    ("GET", "/topics/{}/partitions"): (Access.READ, 0, False),
    ("GET", "/topics/{}/partitions/{}"): (Access.READ, 0, False),
    ("GET", "/topics/{}/partitions/{}/offsets"): (Access.READ, 0, False),
    ("GET", "/brokers"): (Access.AUTHENTICATED, None, False),
    ("POST", "/consumers/{}"): (Access.CONSUMER, None, False),
    # Confluent v3 (§3)
    ("GET", "/v3/clusters"): (Access.AUTHENTICATED, None, False),
    ("GET", "/v3/clusters/{}"): (Access.AUTHENTICATED, None, False),
    ("GET", "/v3/clusters/{}/topics"): (Access.AUTHENTICATED, None, False),
    ("POST", "/v3/clusters/{}/topics"): (Access.ADMIN, None, False),
    ("GET", "/v3/clusters/{}/topics/{}"): (Access.READ, 1, False),
    ("DELETE", "/v3/clusters/{}/topics/{}"): (Access.ADMIN, None, False),
    ("POST", "/v3/clusters/{}/topics/{}/records"): (Access.WRITE, 1, False),
    ("GET", "/v3/clusters/{}/topics/{}/partitions"): (Access.READ, 1, False),
    ("GET", "/v3/clusters/{}/topics/{}/partitions/{}"): (Access.READ, 1, False),
    ("GET", "/v3/clusters/{}/topics/{}/configs"): (Access.READ, 1, False),
}
# Every method on every template under these prefixes.
PREFIX_RULES: tuple[tuple[str, Rule], ...] = (
    ("/consumers/{}/instances/{}", Rule(Access.CONSUMER, owned=True)),
    ("/consumer-groups", Rule(Access.ADMIN)),
    ("/v3/clusters/{}/consumer-groups", Rule(Access.ADMIN)),
    ("/v3/clusters/{}/brokers", Rule(Access.ADMIN)),
    ("/admin", Rule(Access.ADMIN)),
)
# Routes tagged like this are admin routes wherever they live (the safe reading of an unknown route).
ADMIN_TAGS = frozenset({"admin"})


def normalize(template: str) -> tuple[str, list[str]]:
    """``/topics/{topic}/partitions/{p:int}`` -> (``/topics/{}/partitions/{}``, ``["topic", "p"]``)."""
    return _PARAM.sub("{}", template), _PARAM.findall(template)


def classify(method: str, template: str, tags: Iterable[str] = ()) -> Rule | None:
    """The rule for one route, or ``None``: not classified, so denied to everyone."""
    method = "GET" if method == "HEAD" else method
    shape, names = normalize(template)
    entry = RULES.get((method, shape))
    if entry is not None:
        access, index, stream = entry
        topic_param = names[index] if index is not None and index < len(names) else None
        if access in (Access.READ, Access.WRITE) and topic_param is None:
            return None
        return Rule(access, topic_param, stream)
    for prefix, rule in PREFIX_RULES:
        if shape == prefix or shape.startswith(prefix + "/"):
            return rule
    if ADMIN_TAGS.intersection(tags):
        return Rule(Access.ADMIN)
    return None


def named_topics(body: Any) -> tuple[list[str], bool]:
    """Topics a Confluent consumer-instance body names, and whether it subscribes by pattern.

    Covers ``subscription`` (``topics``, ``topic_pattern``), ``assignments`` and ``positions``
    (``partitions[].topic``, ``offsets[].topic``) and ``offsets`` (commit and committed).
    """
    topics: list[str] = []
    pattern = False
    if not isinstance(body, dict):
        return topics, pattern
    names = body.get("topics")
    if isinstance(names, list):
        topics.extend(t for t in names if isinstance(t, str))
    if body.get("topic_pattern") not in (None, ""):
        pattern = True
    for key in ("partitions", "offsets"):
        items = body.get(key)
        if isinstance(items, list):
            topics.extend(i["topic"] for i in items if isinstance(i, dict) and isinstance(i.get("topic"), str))
    return topics, pattern


def authorize(
    rule: Rule, principal: Principal, params: Mapping[str, Any], topics: Iterable[str] = (), pattern: bool = False
) -> None:
    """Raise ``Forbidden`` unless ``principal`` may call a route of ``rule`` with these parameters."""
    scopes = principal.scopes
    access = rule.access
    if access in (Access.OPEN, Access.AUTHENTICATED):
        return
    if access is Access.ADMIN:
        if not scopes.admin:
            raise errors.Forbidden(f"Principal '{principal.name}' needs the admin scope for this route.")
        return
    if access is Access.CONSUMER:
        for topic in topics:
            if not scopes.can_read(topic):
                raise errors.Forbidden(f"Principal '{principal.name}' may not read topic '{topic}'.")
        if pattern and not scopes.reads_everything:
            raise errors.Forbidden(f"Principal '{principal.name}' needs read:* to subscribe by pattern.")
        return
    topic = str(params.get(rule.topic_param or "", ""))
    if access is Access.READ and not scopes.can_read(topic):
        raise errors.Forbidden(f"Principal '{principal.name}' may not read topic '{topic}'.")
    if access is Access.WRITE and not scopes.can_write(topic):
        raise errors.Forbidden(f"Principal '{principal.name}' may not write to topic '{topic}'.")


# -- helpers for routes ------------------------------------------------------------------------


def principal_of(request: Any) -> Principal:
    """The principal of a request (a Starlette ``Request`` or an ASGI scope); set by the security middleware.

    Fails closed: a request that did not pass the middleware has no principal and is refused.
    """
    scope = getattr(request, "scope", request)
    state = scope.get("state") if isinstance(scope, Mapping) else None
    principal = state.get("principal") if isinstance(state, Mapping) else None
    if not isinstance(principal, Principal):
        raise errors.Unauthenticated("Missing credentials.")
    return principal


def require_owner(request: Any, owner: str) -> None:
    """Raise ``Forbidden`` unless the request's principal is ``owner`` (e.g. of a consumer instance)."""
    name = principal_of(request).name
    if name != owner:
        raise errors.Forbidden(f"This consumer instance belongs to another principal than '{name}'.")


# -- credentials -------------------------------------------------------------------------------


def key_digest(key: str) -> str:
    """The hex SHA-256 stored for an API key. Keys are random (see ``new_key``), so a plain hash suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    # 256 random bits; the prefix makes leaked keys easy to find with secret scanners.
    return "kgw_" + secrets.token_urlsafe(32)


class _Quota(msgspec.Struct, forbid_unknown_fields=True):
    records_per_s: float | None = None
    bytes_per_s: float | None = None
    max_streams: int | None = None


class _KeyEntry(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    sha256: str
    scopes: list[str] = []
    quota: _Quota | None = None


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[_KeyEntry]


def load_api_keys(text: bytes) -> dict[str, Principal]:
    """Parse a key file: ``{"keys": [{"name", "sha256", "scopes": [...], "quota": {...}?}]}``."""
    parsed = msgspec.json.decode(text, type=_KeyFile)
    out: dict[str, Principal] = {}
    for entry in parsed.keys:
        digest = entry.sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"key '{entry.name}': sha256 must be 64 hex digits")
        limits = None
        if entry.quota is not None:
            q = entry.quota
            limits = Limits(q.records_per_s, q.bytes_per_s, q.max_streams)
        out[digest] = Principal(entry.name, Scopes.parse(entry.scopes), limits)
    return out


@dataclass
class _WatchedFile:
    """A file re-read when it changes, checked at most every ``every_s`` seconds."""

    path: Path
    every_s: float
    _stamp: tuple[int, int, int] | None = None
    _checked: float = 0.0

    def changed(self, now: float) -> bool:
        if now - self._checked < self.every_s and self._stamp is not None:
            return False
        self._checked = now
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True


@dataclass
class ApiKeys:
    settings: AuthSettings
    _file: _WatchedFile = field(init=False)
    _keys: dict[str, Principal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.settings.api_keys_file is not None
        self._file = _WatchedFile(self.settings.api_keys_file, self.settings.reload_s)
        self._reload(time.monotonic(), strict=True)

    def _reload(self, now: float, strict: bool = False) -> None:
        try:
            if self._file.changed(now):
                self._keys = load_api_keys(self._file.path.read_bytes())
                log.info("loaded %d API keys from %s", len(self._keys), self._file.path)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            if strict:
                raise ValueError(f"API key file {self._file.path}: {exc}") from None
            # A bad edit must not lock everyone out: the previous keys stay in force.
            log.error("API key file %s not reloaded, previous keys kept: %s", self._file.path, exc)

    def authenticate(self, token: str) -> Principal:
        self._reload(time.monotonic())
        principal = self._keys.get(key_digest(token))
        if principal is None:
            raise errors.Unauthenticated("Invalid API key.")
        return principal


class JwtVerifier:
    """HS256 or RS256 tokens checked against a key file or a JWKS file; verified tokens are cached."""

    def __init__(self, settings: AuthSettings) -> None:
        import jwt  # only jwt mode needs PyJWT and cryptography loaded

        self._jwt = jwt
        self.settings = settings
        source = settings.jwt_jwks_file or settings.jwt_key_file
        assert source is not None
        self._file = _WatchedFile(source, settings.reload_s)
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


class Authenticator:
    """Turns the credential of a request into a ``Principal`` according to the configured mode."""

    def __init__(self, settings: AuthSettings) -> None:
        self.mode = settings.mode
        self._keys = ApiKeys(settings) if settings.mode == "api-key" else None
        self._jwt = JwtVerifier(settings) if settings.mode == "jwt" else None

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


def _main(argv: list[str]) -> int:
    """``python -m gateway.auth new-key NAME [SCOPE ...]``: a fresh key and its key-file entry."""
    if len(argv) < 2 or argv[0] != "new-key":
        print("usage: python -m gateway.auth new-key NAME [SCOPE ...]", file=sys.stderr)
        return 2
    key = new_key()
    entry = {"name": argv[1], "sha256": key_digest(key), "scopes": argv[2:]}
    print(f"key (give it to the client; it is not stored): {key}", file=sys.stderr)
    print(msgspec.json.encode(entry).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
