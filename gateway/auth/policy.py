"""The route policy (``RULES``): which principal may call which route (API.md §6).

Every route is classified by method and path template. A route missing from the policy is denied
to everyone, so a new route cannot be reached until someone decides who may call it;
``tests/unit/test_auth_policy.py`` fails while any registered route is unclassified.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.auth.principals import Principal


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
    rule: Rule,
    principal: Principal,
    params: Mapping[str, Any],
    topics: Iterable[str] = (),
    pattern: bool = False,
    group: str | None = None,
) -> None:
    """Raise ``Forbidden`` unless ``principal`` may call a route of ``rule`` with these parameters.

    ``group`` is the consumer group the request would join (SSE ``group=``, a Confluent instance's group).
    """
    scopes = principal.scopes
    access = rule.access
    if access in (Access.OPEN, Access.AUTHENTICATED):
        return
    if access is Access.ADMIN:
        if not scopes.admin:
            raise errors.Forbidden(f"Principal '{principal.name}' needs the admin scope for this route.")
        return
    if group is not None and not scopes.can_use_group(group):
        raise errors.Forbidden(f"Principal '{principal.name}' may not use consumer group '{group}'.")
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
