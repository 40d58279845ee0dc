"""``api-key`` mode: API keys looked up by their SHA-256 in a key file that is re-read when it changes.

Keys are random (see ``new_key``) and only their hashes are stored; a key is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, field

import msgspec

from gateway import errors
from gateway.auth.principals import Principal, Scopes
from gateway.auth.watched import WatchedFile
from gateway.quotas import Limits
from gateway.settings import AuthSettings

log = logging.getLogger(__name__)


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
class ApiKeys:
    settings: AuthSettings
    _file: WatchedFile = field(init=False)
    _keys: dict[str, Principal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.settings.api_keys_file is not None
        self._file = WatchedFile(self.settings.api_keys_file, self.settings.reload_s)
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
