"""Prometheus metrics (API.md §5): one registry per app, so tests and several apps never collide.

Each concern registers its metrics here, named ``gateway_*``. Topic labels are capped in number
(``topic_label``) so a client inventing topic names cannot blow up the series count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_TOPIC_LABELS = 200
MAX_GROUP_LABELS = 200
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Selected librdkafka statistics (producer; STATISTICS.md), exported as gateway_kafka_<name>.
KAFKA_STATS = {
    "producer_queue_messages": "Messages in the producer's queues (msg_cnt)",
    "producer_queue_bytes": "Bytes in the producer's queues (msg_size)",
    "producer_tx_messages": "Messages sent to brokers since start (txmsgs)",
    "producer_tx_bytes": "Message bytes sent to brokers since start (txmsg_bytes)",
    "broker_up": "1 when the producer's connection to the broker is UP",
    "broker_rtt_avg_seconds": "Broker round-trip time, window average",
    "broker_rtt_p99_seconds": "Broker round-trip time, window 99th percentile",
    "broker_outbuf_requests": "Requests waiting to be sent to the broker",
    "broker_waitresp_requests": "Requests sent, awaiting the broker's response",
    "broker_tx_errors": "Transmission errors since start",
    "broker_req_timeouts": "Requests timed out since start",
}
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
        # The pool of assign-mode consumers (gateway/kafka/pool.py).
        self.sse_pool_consumers = Gauge(
            "gateway_sse_pool_consumers", "Pooled assign-mode consumers: idle or leased to a stream",
            ["state"], registry=r,
        )  # fmt: skip
        self.sse_pool_acquired = Counter(
            "gateway_sse_pool_acquired", "Assign-mode consumers lent to streams: pooled (reused or warm) or new",
            ["source"], registry=r,
        )  # fmt: skip
        # Security (gateway/api/security.py, gateway/quotas.py); principal labels are capped in number.
        self.auth_failures = Counter(
            "gateway_auth_failures", "Requests refused by authentication (401) or authorization (403)",
            ["reason"], registry=r,
        )  # fmt: skip
        self.quota_rejections = Counter(
            "gateway_quota_rejections", "Requests refused with 429 by a per-principal quota",
            ["principal", "kind"], registry=r,
        )  # fmt: skip
        # HTTP, group lag and librdkafka statistics (gateway/observability.py fills them).
        labels = ["method", "route", "status"]
        self.http_requests = Counter("gateway_http_requests", "HTTP requests by route template", labels, registry=r)
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds", "Time to the end of the response", labels,
            buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.group_lag = Gauge(
            "gateway_consumer_group_lag", "Total lag of a consumer group (last seen)", ["group"], registry=r
        )
        self.kafka_stats = {
            name: Gauge(f"gateway_kafka_{name}", text, ["broker"] if name.startswith("broker_") else [], registry=r)
            for name, text in KAFKA_STATS.items()
        }
        self._groups: set[str] = set()
        # Groups this process consumed for (noted from requests), for the periodic lag gauge.
        self.consumed_groups: set[str] = set()

    def observe_group_lag(self, group: str, lag: int) -> None:
        """Record a group's total lag; at most MAX_GROUP_LABELS groups get a series of their own."""
        if group not in self._groups:
            if len(self._groups) >= MAX_GROUP_LABELS:
                return
            self._groups.add(group)
        self.group_lag.labels(group).set(lag)

    def note_consumed_group(self, group: str) -> None:
        if group in self.consumed_groups or len(self.consumed_groups) < MAX_GROUP_LABELS:
            self.consumed_groups.add(group)

    def topic_label(self, topic: str) -> str:
        if topic in self._topics:
            return topic
        if len(self._topics) < MAX_TOPIC_LABELS:
            self._topics.add(topic)
            return topic
        return OTHER_TOPICS

    def render(self) -> bytes:
        return generate_latest(self.registry)
