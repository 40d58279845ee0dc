"""Owners of Confluent consumer instances: the principal that created one is the only one who may use it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
from starlette.types import Message, Scope, Send

from gateway import errors
from gateway.auth.policy import Rule
from gateway.auth.principals import Principal


class ConsumerOwners:
    """Each Confluent consumer instance belongs to the principal that created it (on this process).

    Recorded from the creation's answer (``instance_id``), checked before every request to the
    instance, forgotten when it is deleted or answers 404 (expired). Kept here, beside the other
    checks, so the consumer code needs no knowledge of principals.
    """

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()

    def guard(self, scope: Scope, send: Send, rule: Rule, params: dict[str, Any], principal: Principal) -> Send:
        values = [str(v) for v in params.values()]
        if not rule.owned:
            if scope["method"] != "POST" or len(values) != 1:
                return send
            return self._on_create(values[0], principal.name, send)
        key = (values[0], values[1])
        owner = self._owners.get(key)
        if owner is not None:
            self._owners.move_to_end(key)
            if owner != principal.name:
                raise errors.Forbidden("This consumer instance belongs to another principal.")
        deleting = scope["method"] == "DELETE" and len(values) == 2

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 404 or (deleting and status == 204):
                    self._owners.pop(key, None)
            await send(message)

        return watch

    def _on_create(self, group: str, who: str, send: Send) -> Send:
        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._record(group, b"".join(chunks), who)
            await send(message)

        return capture

    def _record(self, group: str, body: bytes, who: str) -> None:
        try:
            instance = msgspec.json.decode(body).get("instance_id")
        except (msgspec.DecodeError, UnicodeDecodeError, AttributeError):
            return
        if isinstance(instance, str):
            self._owners[(group, instance)] = who
            self._owners.move_to_end((group, instance))
            while len(self._owners) > self._bound:
                self._owners.popitem(last=False)
