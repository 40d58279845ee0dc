"""The route policy: every route the app serves is classified, and the classes mean what they say."""

from __future__ import annotations

import pytest
from fastapi.routing import iter_route_contexts

from gateway import errors
from gateway.api.route_table import route_table
from gateway.app import create_app
from gateway.auth.policy import Access, Rule, authorize, classify, named_topics
from gateway.auth.principals import Principal, Scopes
from gateway.settings import Settings


def test_every_registered_route_is_classified() -> None:
    """A new route must be added to gateway.auth.policy.RULES (or be tagged admin) before anyone can call it."""
    app = create_app(Settings())
    unclassified = [
        f"{method} {ctx.path}"
        for ctx in iter_route_contexts(app.routes)
        for method in sorted(ctx.methods or {"*"})
        if classify(method, ctx.path or "", getattr(ctx, "tags", None) or ()) is None
    ]
    assert not unclassified, f"routes not in gateway.auth.policy.RULES: {unclassified}"
    table = route_table(app)
    assert len(table) == len(list(iter_route_contexts(app.routes)))
    assert all(rule is not None for e in table for rule in (e.rules or {}).values())


def test_open_routes_are_only_operations_and_the_contract() -> None:
    app = create_app(Settings())
    open_routes = {
        ctx.path
        for ctx in iter_route_contexts(app.routes)
        for method in ctx.methods or ()
        if (rule := classify(method, ctx.path or "")) is not None and rule.access is Access.OPEN
    }
    assert open_routes <= {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }


@pytest.mark.parametrize(
    ("method", "template", "access", "topic_param", "flag"),
    [
        ("POST", "/topics/{topic}/records", Access.WRITE, "topic", False),
        ("GET", "/topics/{topic}/events", Access.READ, "topic", "stream"),
        ("HEAD", "/topics/{name}/events", Access.READ, "name", "stream"),
        ("GET", "/topics/{topic}/partitions/{partition:int}/records", Access.READ, "topic", False),
        ("POST", "/topics", Access.ADMIN, None, False),
        ("DELETE", "/topics/{topic}", Access.ADMIN, None, False),
        ("POST", "/topics/{topic}", Access.WRITE, "topic", False),
        ("POST", "/v3/clusters/{cluster_id}/topics/{topic_name}/records", Access.WRITE, "topic_name", False),
        ("GET", "/v3/clusters/{c}/consumer-groups/{g}/lag-summary", Access.ADMIN, None, False),
        ("GET", "/consumers/{g}/instances/{i}/records", Access.CONSUMER, None, "owned"),
        ("DELETE", "/consumers/{g}/instances/{i}", Access.CONSUMER, None, "owned"),
        ("POST", "/consumers/{g}", Access.CONSUMER, None, False),
        ("GET", "/healthz", Access.OPEN, None, False),
    ],
)
def test_classification(method: str, template: str, access: Access, topic_param: str | None, flag: str | bool) -> None:
    assert classify(method, template) == Rule(access, topic_param, stream=flag == "stream", owned=flag == "owned")


def test_unknown_routes_are_unclassified_unless_tagged_admin() -> None:
    assert classify("GET", "/debug/vars") is None
    assert classify("PUT", "/topics/{topic}/records") is None
    assert classify("POST", "/topics/{topic}/configs", ["admin"]) == Rule(Access.ADMIN)


def test_authorize_checks_the_topic_against_the_scope_kind() -> None:
    p = Principal("web", Scopes.parse(["read:orders.*", "write:clicks"]))
    authorize(Rule(Access.READ, "topic"), p, {"topic": "orders.eu"})
    authorize(Rule(Access.WRITE, "topic"), p, {"topic": "clicks"})
    with pytest.raises(errors.Forbidden, match=r"may not write to topic 'orders\.eu'"):
        authorize(Rule(Access.WRITE, "topic"), p, {"topic": "orders.eu"})
    with pytest.raises(errors.Forbidden, match="may not read topic 'clicks'"):
        authorize(Rule(Access.READ, "topic"), p, {"topic": "clicks"})
    with pytest.raises(errors.Forbidden, match="admin scope"):
        authorize(Rule(Access.ADMIN), p, {})
    authorize(Rule(Access.AUTHENTICATED), p, {})


def test_consumer_bodies_name_topics_and_patterns_need_read_everything() -> None:
    p = Principal("svc", Scopes.parse(["read:orders.*"]))
    rule = Rule(Access.CONSUMER)
    assert named_topics({"topics": ["orders.eu", 7]}) == (["orders.eu"], False)
    assert named_topics({"partitions": [{"topic": "a", "partition": 0}], "offsets": [{"topic": "b"}]}) == (
        ["a", "b"],
        False,
    )
    assert named_topics({"topic_pattern": "orders.*"}) == ([], True)
    authorize(rule, p, {}, ["orders.eu"])
    with pytest.raises(errors.Forbidden, match="may not read topic 'payments'"):
        authorize(rule, p, {}, ["orders.eu", "payments"])
    with pytest.raises(errors.Forbidden, match="read:\\*"):
        authorize(rule, p, {}, [], True)
    authorize(rule, Principal("all", Scopes.parse(["read:*"])), {}, [], True)


def test_group_scopes_confine_groups_and_none_means_every_group() -> None:
    team = Principal("team", Scopes.parse(["read:orders.*", "group:team-*", "group:audit"]))
    for rule in (Rule(Access.CONSUMER), Rule(Access.READ, "topic", stream=True)):
        for group in ("team-a", "audit"):
            authorize(rule, team, {"topic": "orders.eu"}, [], False, group)
        with pytest.raises(errors.Forbidden, match="may not use consumer group 'billing'"):
            authorize(rule, team, {"topic": "orders.eu"}, [], False, "billing")
        with pytest.raises(errors.Forbidden, match="may not use consumer group 'audit-2'"):
            authorize(rule, team, {"topic": "orders.eu"}, [], False, "audit-2")
        authorize(rule, team, {"topic": "orders.eu"})  # no group asked for
        authorize(rule, Principal("any", Scopes.parse(["read:*"])), {"topic": "orders.eu"}, [], False, "billing")
    # A group scope grants no topic: reading still needs read.
    with pytest.raises(errors.Forbidden, match="may not read topic"):
        authorize(Rule(Access.READ, "topic"), Principal("g", Scopes.parse(["group:*"])), {"topic": "t"}, [], False, "x")


def test_no_auth_beyond_loopback_warns_loudly_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="gateway.api.security"):
        create_app(Settings(host="127.0.0.1"))
        assert not caplog.records
        create_app(Settings(host="0.0.0.0"))
    assert any("GATEWAY_AUTH__MODE=none" in r.getMessage() for r in caplog.records)
