"""Pure parts of gateway/observability.py: query redaction and librdkafka statistics parsing."""

from __future__ import annotations

import json

from gateway.metrics import Metrics
from gateway.observability import safe_query, stats_callback, with_stats
from gateway.settings import Settings


def test_credentials_in_the_query_are_redacted() -> None:
    q = safe_query(b"from=earliest&access_token=abc.def&API_KEY=k1&key=user-1")
    assert "abc.def" not in q and "k1" not in q
    assert "access_token=[redacted]" in q and "API_KEY=[redacted]" in q
    assert "from=earliest" in q and "key=user-1" in q
    assert safe_query(b"") == ""


def test_statistics_fill_the_gauges() -> None:
    metrics = Metrics()
    stats = {
        "msg_cnt": 7,
        "msg_size": 700,
        "txmsgs": 42,
        "txmsg_bytes": 4200,
        "brokers": {
            "127.0.0.1:9092/bootstrap": {"nodeid": -1, "nodename": "127.0.0.1:9092", "state": "UP"},
            "127.0.0.1:9092/1": {
                "nodeid": 1,
                "nodename": "127.0.0.1:9092",
                "state": "UP",
                "rtt": {"avg": 1500, "p99": 9000},
                "outbuf_cnt": 2,
                "waitresp_cnt": 3,
                "txerrs": 0,
                "req_timeouts": 1,
            },
        },
    }
    stats_callback(metrics)(json.dumps(stats))
    text = metrics.render().decode()
    assert "gateway_kafka_producer_queue_messages 7.0" in text
    assert "gateway_kafka_producer_tx_messages 42.0" in text
    assert 'gateway_kafka_broker_rtt_avg_seconds{broker="127.0.0.1:9092"} 0.0015' in text
    assert 'gateway_kafka_broker_waitresp_requests{broker="127.0.0.1:9092"} 3.0' in text
    assert 'gateway_kafka_broker_up{broker="127.0.0.1:9092"} 1.0' in text
    # A malformed document is logged and ignored, never raised into librdkafka's thread.
    stats_callback(metrics)("{not json")


def test_operator_interval_wins_and_zero_turns_statistics_off() -> None:
    metrics = Metrics()
    conf = with_stats({}, Settings(kafka_stats_interval_ms=5000), metrics)
    assert conf["statistics.interval.ms"] == "5000" and callable(conf["stats_cb"])
    conf = with_stats({"statistics.interval.ms": "60000"}, Settings(), metrics)
    assert conf["statistics.interval.ms"] == "60000" and "stats_cb" in conf
    assert "stats_cb" not in with_stats({}, Settings(kafka_stats_interval_ms=0), metrics)
