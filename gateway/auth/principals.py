"""Principals and their scopes, and how a route reaches the principal the middleware found (API.md §6).

- **Scopes** are ``read:<topic glob>``, ``write:<topic glob>`` and ``admin`` (``fnmatch`` globs, case
  sensitive like topic names). ``admin`` does not imply reading or writing data: a superuser has
  ``admin read:* write:*``. Unknown scopes (``openid`` and the like) are ignored.
- ``group:<glob>`` scopes confine the consumer groups a principal may join and commit for (SSE ``group=``,
  Confluent consumer instances). A principal with none may use every group, as before these scopes existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gateway import errors
from gateway.quotas import Limits


@dataclass(frozen=True, slots=True)
class Scopes:
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    admin: bool = False
    # Consumer-group globs; empty: every group.
    group: tuple[str, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Scopes:
        globs: dict[str, list[str]] = {"read": [], "write": [], "group": []}
        admin = False
        for item in items:
            kind, _, glob = item.partition(":")
            if kind in globs and glob:
                globs[kind].append(glob)
            elif item == "admin":
                admin = True
        return cls(tuple(globs["read"]), tuple(globs["write"]), admin, tuple(globs["group"]))

    def can_read(self, topic: str) -> bool:
        return any(fnmatchcase(topic, glob) for glob in self.read)

    def can_write(self, topic: str) -> bool:
        return any(fnmatchcase(topic, glob) for glob in self.write)

    def can_use_group(self, group: str) -> bool:
        return not self.group or any(fnmatchcase(group, glob) for glob in self.group)

    def can_see(self, topic: str) -> bool:
        """Whether a topic listing shows ``topic``: to admins all, to others what they may read or write.

        Kafka's own metadata answers the same way: a client sees only the topics it may describe.
        """
        return self.admin or self.can_read(topic) or self.can_write(topic)

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
