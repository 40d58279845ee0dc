"""Offsets asked for while a partition's leadership is in flux are asked again, not answered with 503.

Right after CreateTopics a broker may answer ListOffsets with "Leader epoch is newer than broker epoch"
(seen once in CI as a 503 on a v3 topic creation that had succeeded). The real broker cannot be made to
answer that on demand, so an AdminClient stand-in fails the first call and answers the second.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from gateway import errors
from gateway.kafka.admin import ClusterAdmin, valid_topic_name


class ListedOffset:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FlakyAdmin:
    """``list_offsets`` fails with ``codes`` (one per call) before it answers offset 7 per partition."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.calls = 0

    def list_offsets(self, request: dict[TopicPartition, Any], request_timeout: float) -> dict[TopicPartition, Any]:
        self.calls += 1
        out = {}
        for tp in request:
            fut: Future[Any] = Future()
            if self.codes:
                fut.set_exception(KafkaException(KafkaError(self.codes[0])))
            else:
                fut.set_result(ListedOffset(7))
            out[tp] = fut
        if self.codes:
            self.codes.pop(0)
        return out


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.FENCED_LEADER_EPOCH,
                                  KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])  # fmt: skip
def test_offsets_are_asked_again_while_leadership_settles(code: int) -> None:
    fake = FlakyAdmin(code, code)
    with ThreadPoolExecutor(2) as executor:
        admin = ClusterAdmin(fake, executor, 5.0)  # type: ignore[arg-type]
        assert asyncio.run(admin.list_offsets("t", [0, 1], "latest")) == {0: 7, 1: 7}
    assert fake.calls == 3


def test_other_errors_are_not_retried() -> None:
    fake = FlakyAdmin(KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    with ThreadPoolExecutor(2) as executor:
        admin = ClusterAdmin(fake, executor, 5.0)  # type: ignore[arg-type]
        with pytest.raises(errors.GatewayError):
            asyncio.run(admin.list_offsets("t", [0], "latest"))
    assert fake.calls == 1


def test_topic_names_as_kafka_allows_them() -> None:
    for name in ("orders", "a.b-c_D9", "x" * 249, "..."):
        assert valid_topic_name(name), name
    for name in ("", ".", "..", "x" * 250, "a b", "a+b", "ordérs", "a/b"):
        assert not valid_topic_name(name), name
