"""Produce request parsing and validation (gateway.records, gateway.codec), the idempotency store, and the
producer's batch completion against librdkafka's mock cluster. Broker-level evidence is in
tests/integration/test_produce*.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import codec, errors, records
from gateway.kafka.delivery import Delivered
from gateway.kafka.producer import GatewayProducer
from gateway.publish import IdempotencyStore

DEFAULT = records.Formats()
pytestmark = pytest.mark.anyio


def as_bytes(data: Any) -> bytes | None:
    """A prepared key or value as the bytes Kafka gets (``prepare`` leaves text as str, JSON as ``Raw``)."""
    if data is None:
        return None
    return data.encode() if isinstance(data, str) else bytes(data)


def prepare(items: Any, fmt: records.Formats, max_bytes: int, extra: Any, where: str | None) -> list[Any]:
    out = records.prepare(items, fmt, max_bytes, extra, where)
    return [(as_bytes(r[0]), as_bytes(r[1]), *r[2:]) for r in out]


def prepared(body: Any, fmt: records.Formats = DEFAULT, max_bytes: int = 1_000_000, **kw: Any) -> list[Any]:
    items, is_batch = records.parse_body(json.dumps(body).encode(), fmt)
    return prepare(items, fmt, max_bytes, kw.get("extra"), None if is_batch else "record")


def test_single_record_and_batch_shapes() -> None:
    (one,) = prepared({"key": "k", "value": {"a": 1}})
    assert one == (b'{"a":1}', b"k", None, -1, 0, 8)
    batch = prepared({"records": [{"value": None}, {"key": None, "value": [1], "partition": 2, "timestamp": 5}]})
    assert batch == [(None, None, None, -1, 0, 0), (b"[1]", None, None, 2, 5, 3)]


def test_batches_in_every_format() -> None:
    for key_format in ("json", "string", "binary"):
        fmt = records.Formats(key=key_format, value="json")
        assert prepared({"records": [{"value": 1}, {"key": None, "value": 2}]}, fmt) == [
            (b"1", None, None, -1, 0, 1),
            (b"2", None, None, -1, 0, 1),
        ]


def test_headers_are_utf8_and_extra_headers_come_last() -> None:
    (rec,) = prepared({"value": 1, "headers": {"a": "ü"}}, extra=[("idempotency-key", b"x")])
    assert rec[2] == [("a", "ü".encode()), ("idempotency-key", b"x")]
    assert rec[5] == 1 + 1 + 2  # value + header name + UTF-8 header value


@pytest.mark.parametrize(
    ("body", "fmt", "status", "words"),
    [
        (
            {"key": 1, "value": 1},
            DEFAULT,
            errors.InvalidRecord,
            "key must be a JSON string or null with key_format=string",
        ),
        ({"records": [{"value": 1}, {"key": []}]}, DEFAULT, errors.InvalidRecord, "records[1]"),
        ({"value": "%%%"}, records.Formats("string", "binary"), errors.InvalidRecord, "value must be base64"),
        ({"value": 1, "extra": 2}, DEFAULT, errors.InvalidRecord, "unknown field `extra`"),
        ({"records": [{"value": 1, "partition": -3}]}, DEFAULT, errors.InvalidRecord, "records[0].partition"),
        ({"records": [{"value": 1}], "value": 2}, DEFAULT, errors.InvalidRecord, "only 'records'"),
        ({"key": "k"}, DEFAULT, errors.InvalidRecord, "'value' is required"),
        ({"value": 1, "timestamp": "2024-13-01T00:00:00Z"}, DEFAULT, errors.InvalidRecord, "RFC 3339"),
        ({"value": 1, "timestamp": 0}, DEFAULT, errors.InvalidRecord, "from 1"),
        ({"value": 1, "timestamp": 2**62}, DEFAULT, errors.InvalidRecord, "timestamp"),
    ],
)
def test_invalid_records_name_the_field(body: Any, fmt: records.Formats, status: type, words: str) -> None:
    with pytest.raises(status) as info:
        prepared(body, fmt)
    assert words in info.value.message


def test_malformed_json_is_bad_request() -> None:
    with pytest.raises(errors.BadRequest, match="Malformed JSON"):
        records.parse_body(b'{"value": ', DEFAULT)
    with pytest.raises(errors.BadRequest, match="line 3"):
        records.parse_line(b"{", DEFAULT, "line 3")


def test_record_size_limit_names_the_record() -> None:
    with pytest.raises(errors.PayloadTooLarge, match=r"records\[1\]: 12 bytes .* 10 bytes"):
        prepared({"records": [{"value": 1}, {"value": "x" * 10}]}, max_bytes=10)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-05-01T12:00:00Z", 1714564800000),
        ("2024-05-01t12:00:00.250z", 1714564800250),
        ("2024-05-01T14:00:00.250+02:00", 1714564800250),
        ("2024-05-01T12:00:00.123999Z", 1714564800123),  # truncated to the millisecond, never rounded up
        ("1700000000000", 1700000000000),
    ],
)
def test_timestamps(text: str, ms: int) -> None:
    assert codec.parse_timestamp(text) == ms


@given(st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=20))
def test_rfc3339_milliseconds_are_exact(millis: list[int]) -> None:
    for m in millis:
        assert codec.parse_timestamp(f"2024-05-01T12:00:00.{m:03d}Z") == 1714564800000 + m


@settings(max_examples=200)
@given(st.binary(max_size=300), st.text(max_size=50))
def test_binary_and_string_formats_round_trip_exact_bytes(data: bytes, text: str) -> None:
    fmt = records.Formats(key="string", value="binary")
    (rec,) = prepared({"key": text, "value": base64.b64encode(data).decode()}, fmt)
    assert rec[0] == data and rec[1] == text.encode()


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )
)
def test_json_values_are_written_compact(value: Any) -> None:
    # Whatever whitespace the client sends, Kafka gets compact UTF-8 JSON with the same text otherwise.
    body = json.dumps({"value": {"v": value}}, indent=2, ensure_ascii=False).encode()
    items, _ = records.parse_body(body, DEFAULT)
    (rec,) = prepare(items, DEFAULT, 1_000_000, None, "record")
    assert rec[0] == msgspec.json.encode({"v": value})


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_texts, st.booleans(), st.sampled_from(["", r',"\/"', ",1.0E+2", ",-0.0e-5", r',"\u00e9\ud83d\ude00"']))
def test_compact_json_is_written_byte_for_byte(value: Any, ascii_only: bool, spelled: str) -> None:
    # Compact text skips reformatting: its bytes must be exactly what reformatting gives (escapes,
    # number spellings and all), as key and as value.
    text = "[" + json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only) + spelled + "]"
    body = b'{"key":' + text.encode() + b',"value":' + text.encode() + b"}"
    fmt = records.Formats(key="json", value="json")
    items, _ = records.parse_body(body, fmt)
    ((val, key, *_),) = prepare(items, fmt, 1_000_000, None, "record")
    assert val == key == msgspec.json.format(text.encode(), indent=-1) == text.encode()


# -- idempotency store --------------------------------------------------------------------------------


async def test_idempotency_same_body_replays_other_body_refused() -> None:
    store = IdempotencyStore(window_s=60, max_keys=10)
    first, answer = store.begin("k", "t", b"body")
    assert first
    again, pending = store.begin("k", "t", b"body")
    assert not again and not pending.done()
    store.finish("k", answer, 200, b"ok")
    assert await pending == (200, b"ok")
    with pytest.raises(errors.InvalidRecord, match="different"):
        store.begin("k", "t", b"other")
    with pytest.raises(errors.InvalidRecord):
        store.begin("k", "other-topic", b"body")


async def test_idempotency_retryable_answers_are_not_remembered_and_keys_expire() -> None:
    store = IdempotencyStore(window_s=0.05, max_keys=2)
    _, answer = store.begin("busy", "t", b"b")
    store.finish("busy", answer, 503, b"later")
    assert store.begin("busy", "t", b"b")[0]  # tried again for real
    _, answer = store.begin("old", "t", b"b")
    store.finish("old", answer, 200, b"x")
    await asyncio.sleep(0.1)
    assert store.begin("old", "t", b"new body")[0]  # expired: a new request


async def test_idempotency_waiters_are_answered_even_after_eviction() -> None:
    store = IdempotencyStore(window_s=60, max_keys=1)
    _, answer = store.begin("a", "t", b"1")
    _, waiting = store.begin("a", "t", b"1")
    store.begin("b", "t", b"2")  # evicts "a" while its first request still runs
    store.finish("a", answer, 200, b"done")
    assert await asyncio.wait_for(waiting, 1) == (200, b"done")


# -- producer batches on librdkafka's mock cluster -----------------------------------------------------


async def test_batch_completes_once_with_results_in_order_and_one_hook_call() -> None:
    calls: list[tuple[str, int, int, dict[str, int]]] = []
    producer = GatewayProducer(
        {"test.mock.num.brokers": 1, "acks": "all", "enable.idempotence": "true", "linger.ms": 1},
        max_in_flight_records=100,
        max_in_flight_bytes=10_000,
        on_delivery=lambda *args: calls.append(args),
    )
    try:
        recs = [(b"v%d" % i, b"k", None, 0, 0, 3) for i in range(10)]
        results: list[Any] = [None] * 10
        results[3] = errors.PartitionNotFound("mock", 9)  # refused before producing
        batch = producer.produce_batch("mock", recs, results)
        assert producer.in_flight_records == 9
        await asyncio.wait_for(batch.future, 30)  # type: ignore[arg-type]
        out = batch.outcomes()
        assert isinstance(out[3], errors.PartitionNotFound)
        offsets = [o.offset for o in out if isinstance(o, Delivered)]
        assert offsets == sorted(offsets) and len(offsets) == 9
        assert calls == [("mock", 9, 27, {})]
        assert producer.in_flight_records == 0 and producer.in_flight_bytes == 0
        with pytest.raises(errors.Backpressure):
            producer.reserve(101, 0)
    finally:
        with ThreadPoolExecutor(1) as executor:
            await producer.close(executor, 5)


async def test_close_answers_records_it_gave_up_on_instead_of_leaving_them_waiting() -> None:
    # Nothing listens on the bootstrap port: the records stay queued until close() gives up on them.
    producer = GatewayProducer(
        {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": "60000"},
        max_in_flight_records=100,
        max_in_flight_bytes=10_000,
    )
    recs = [(b"v%d" % i, None, [("h", b"x")], -1, 0, 3) for i in range(3)]
    batch = producer.produce_batch("nowhere", recs, [None] * 3)
    with ThreadPoolExecutor(1) as executor:
        await asyncio.wait_for(producer.close(executor, 0.2), 10)
    assert batch.future is not None and batch.future.done()
    out = batch.outcomes()
    assert all(isinstance(o, errors.Unavailable) and "shut down before sending" in o.message for o in out), out
    assert producer.undelivered_at_close == 3 and producer.in_flight_records == 0
    with pytest.raises(errors.Unavailable):
        producer.reserve(1, 1)


async def test_librdkafka_log_lines_reach_python_logging_on_the_event_loop() -> None:
    # librdkafka's own lines (here: the refused connection) come through the queue the event loop serves.
    lines: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    logger = logging.getLogger("test.librdkafka")
    logger.addHandler(Collect())
    logger.setLevel(logging.DEBUG)
    producer = GatewayProducer(
        {"bootstrap.servers": "127.0.0.1:9", "logger": logger},
        max_in_flight_records=10,
        max_in_flight_bytes=1_000,
    )
    try:
        for _ in range(100):
            if any("127.0.0.1:9" in r.getMessage() for r in lines):
                break
            await asyncio.sleep(0.05)
        failed = [r for r in lines if "127.0.0.1:9" in r.getMessage()]
        assert failed and failed[0].levelno >= logging.WARNING, [r.getMessage() for r in lines]
    finally:
        with ThreadPoolExecutor(1) as executor:
            await producer.close(executor, 1)
