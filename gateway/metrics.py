"""Prometheus metrics (API.md §5): one registry per app, so tests and several apps never collide.

Each concern registers its metrics here, named ``gateway_*``. Topic labels are capped in number
(``topic_label``) so a client inventing topic names cannot blow up the series count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_TOPIC_LABELS = 200
OTHER_TOPICS = "_other"

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _topics: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        r = self.registry
        self.records_produced = Counter(
            "gateway_records_produced", "Records acknowledged by Kafka", ["topic"], registry=r
        )
        self.bytes_produced = Counter(
            "gateway_bytes_produced", "Key+value+header bytes acknowledged by Kafka", ["topic"], registry=r
        )
        self.delivery_errors = Counter(
            "gateway_delivery_errors", "Records Kafka did not accept, by error", ["error"], registry=r
        )
        self.producer_queue = Gauge(
            "gateway_producer_in_flight_records", "Records queued or awaiting acknowledgement", registry=r
        )
        self.sse_streams = Gauge("gateway_sse_streams", "Open SSE streams by mode", ["mode"], registry=r)
        self.sse_events = Counter("gateway_sse_events_sent", "SSE record events written", ["mode"], registry=r)
        self.sse_evictions = Counter(
            "gateway_sse_slow_subscriber_evictions", "Subscribers closed for falling behind", registry=r
        )
        self.sse_shared_consumers = Gauge(
            "gateway_sse_shared_consumers", "Kafka consumers serving fan-out subscribers", registry=r
        )

    def topic_label(self, topic: str) -> str:
        if topic in self._topics:
            return topic
        if len(self._topics) < MAX_TOPIC_LABELS:
            self._topics.add(topic)
            return topic
        return OTHER_TOPICS

    def render(self) -> bytes:
        return generate_latest(self.registry)
