"""What a consumer instance fetched but has not returned to its client yet, and what it returned.

"Consumed" means "returned to the client" (see ``gateway.consumers``): records that do not fit a
response stay buffered here and open the next one, and commits only ever see the offsets of
records returned.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaError, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from gateway import errors

log = logging.getLogger(__name__)

TP = tuple[str, int]

# librdkafka errors that a fetch reports to the client instead of logging and skipping.
_FATAL_FETCH_ERRORS = {KafkaError._FATAL}
# Kafka's ACLs refusing the gateway's own user: 403, since no retry can help (not 503 with Retry-After).
_DENIED_TOPIC, _DENIED_GROUP = KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED
_BENIGN_FETCH_ERRORS = {KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
# Kafka unreachable: librdkafka reconnects by itself; the fetch just finds nothing. Logged at debug,
# since every poll of every instance would repeat it (readiness already reports the outage).
_TRANSIENT_FETCH_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}


def tp_of(msg: Message) -> TP:
    return msg.topic() or "", msg.partition() or 0


def record_size(msg: Message) -> int:
    """What ``max_bytes`` counts: the unencoded key and value bytes, as the Confluent proxy does."""
    key, value = msg.key(), msg.value()
    return (len(key) if key else 0) + (len(value) if value else 0)


class Progress:
    """The read-ahead buffer and the returned offsets of one instance; used under the instance's lock."""

    def __init__(self) -> None:
        # Fetched from Kafka but not yet returned to the client, in fetch order.
        self.buffer: deque[Message] = deque()
        # Next offset after the last record returned to the client, per partition.
        self.returned: dict[TP, int] = {}
        # Appended by librdkafka's revoke callback on an executor thread, drained on the loop.
        self._revoked: list[list[KafkaTopicPartition]] = []

    def clear(self) -> None:
        self.buffer.clear()
        self.returned.clear()
        self._revoked.clear()

    def on_revoke(self, _consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        # librdkafka thread: only record; the loop forgets the partitions' returned offsets.
        self._revoked.append(list(partitions))

    def drain_revoked(self) -> set[TP]:
        """Partitions the group took away since the last call; their offsets are no longer ours to commit.

        Records of theirs already fetched stay buffered and are still returned: the new owner reads
        them again from the committed offset (a duplicate, as at-least-once allows). Dropping them
        instead could drop records fetched after the partition came back in the same fetch, and a
        batch does not say which of its records came before a rebalance.
        """
        gone: set[TP] = set()
        while self._revoked:
            gone.update((tp.topic, tp.partition) for tp in self._revoked.pop(0))
        for tp in gone:
            self.returned.pop(tp, None)
        return gone

    def resume_offset(self, tp: TP) -> int:
        """Where a partition should continue after re-assignment: its first record not yet returned."""
        for m in self.buffer:
            if tp_of(m) == tp:
                return int(m.offset() or 0)
        return self.returned.get(tp, OFFSET_INVALID)

    def reassigned(self, wanted: list[TP]) -> None:
        """Forget everything buffered, and the returned offsets of partitions no longer assigned."""
        self.buffer.clear()
        keep = set(wanted)
        self.returned = {tp: o for tp, o in self.returned.items() if tp in keep}

    def seeked(self, partitions: dict[TP, int]) -> None:
        """Forget the records buffered for partitions whose next fetch starts elsewhere now."""
        self.buffer = deque(m for m in self.buffer if tp_of(m) not in partitions)

    def take(self, out: list[Message], size: int, limit: int) -> tuple[int, bool]:
        """Move buffered records into ``out`` while they fit ``limit`` (at least one record in ``out``).

        Returns the new size of ``out`` and whether a buffered record did not fit.
        """
        while self.buffer:
            s = record_size(self.buffer[0])
            if out and size + s > limit:
                return size, True
            out.append(self.buffer.popleft())
            size += s
        return size, False

    def add(self, msgs: list[Message], group: str, name: str) -> None:
        """Buffer what a consume returned; a fatal error is the client's, others are logged and skipped."""
        for m in msgs:
            err = m.error()
            if err is None:
                self.buffer.append(m)
            elif err.code() == _DENIED_GROUP:
                raise errors.KafkaDenied("read", None, err.str(), group=group)
            elif err.code() == _DENIED_TOPIC:
                raise errors.KafkaDenied("read", m.topic(), err.str())
            elif err.code() in _FATAL_FETCH_ERRORS or err.fatal():
                raise errors.Unavailable(f"Kafka error while fetching: {err.str()}.")
            elif err.code() in _TRANSIENT_FETCH_ERRORS:
                log.debug("consumer %s/%s: %s", group, name, err.str())
            elif err.code() not in _BENIGN_FETCH_ERRORS:
                log.warning("consumer %s/%s: %s", group, name, err.str())
