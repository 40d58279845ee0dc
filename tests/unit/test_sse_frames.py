"""An SSE stream's chunk (``streams.encode_batch``, the per-event hot path) holds exactly the frames the
plain definitions give: ``sse.record_data`` in ``sse.frame`` under the id ``cursor.encode`` makes of the
positions after the record, for every format, decode failure, tombstone, header set, filter and group
mode; both from the compiled loop (``gateway._frames``) and from the Python one."""

from __future__ import annotations

import msgspec
import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import codec, cursor, sse, streams
from gateway.kafka.metadata import TopicInfo

TOPIC = "orders"
payloads = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b'{"n": 1,\n "ok": true}',
            b"[1,2]",
            b"not json",
            b"\xff\xfe",
            b"caf\xc3\xa9",
            b"",
            b'"s"',
            b'"caf\xc3\xa9"',
            b'"\xff"',
            b'{"a":\r\n1}',
        ]
    ),
    st.binary(max_size=12),
    # ASCII text: quotes, backslashes, control characters and DEL next to text that needs no escaping.
    st.text(st.characters(max_codepoint=0x7F), max_size=8).map(str.encode),
    st.builds(lambda n: msgspec.json.encode({"user": f"u-{n}", "n": n}), st.integers(0, 2**40)),
)
headers = st.one_of(
    st.none(),
    st.lists(st.tuples(st.sampled_from(["a", "b", "é"]), st.one_of(st.none(), st.binary(max_size=6))), max_size=3),
)
records = st.lists(
    st.tuples(st.sampled_from([0, 2, 5]), payloads, payloads, headers, st.integers(0, 2**41)), max_size=30
)
formats = st.sampled_from(codec.FORMATS)
# Offsets on both sides of the varint lengths the cursor writes inline.
starts = st.sampled_from([0, 100, 0x3FF0, 0x1FFFF0, 0xFFFFFF0, 2**40])


def reference(
    spec: streams.StreamSpec, positions: dict[int, int], msgs: list[Message], owned: set[int] | None = None
) -> tuple[bytes, int]:
    frames = []
    for m in msgs:
        p, offset = m.partition(), m.offset()
        assert p is not None and offset is not None
        if owned is not None and p not in owned:
            continue  # a group-mode stream's revoked partition
        positions[p] = offset + 1
        if not streams._matches(spec, m):
            continue
        data = sse.record_data(
            msgspec.json.encode(TOPIC), p, offset, m.timestamp()[1], m.key(), m.value(), m.headers(),  # type: ignore[arg-type]
            spec.key_format, spec.value_format,
        )  # fmt: skip
        frames.append(sse.frame(cursor.encode(TOPIC, positions), data, m.value() is None))
    return b"".join(frames), len(frames)


@settings(max_examples=300, deadline=None)
@given(
    records,
    formats,
    formats,
    starts,
    st.sampled_from([None, "u-1", "caf\xe9"]),
    st.sampled_from(["", "n=7", "user=u-3"]),
    st.sampled_from([None, frozenset({0, 2, 5}), frozenset({0, 5})]),
)
def test_chunk_is_the_plain_frames(
    recs: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int]],
    key_format: codec.Format,
    value_format: codec.Format,
    start: int,
    key: str | None,
    filter_expr: str,
    group: frozenset[int] | None,
) -> None:
    path, expected = streams.parse_filter(filter_expr)
    spec = streams.StreamSpec(
        TopicInfo(TOPIC, 6), (0, 2, 5), "earliest", None, None, key_format, value_format, key, path, expected
    )
    next_offset = {0: start, 2: start + 7, 5: start}
    msgs = []
    for p, k, v, h, ts in recs:
        msgs.append(
            Message(topic=TOPIC, partition=p, offset=next_offset[p], key=k, value=v, headers=h, timestamp=(1, ts))
        )
        next_offset[p] += 1
    start_positions = {0: start, 2: start + 7, 5: start}
    owned = None
    if group is not None:
        # Group mode: partition 5 was just assigned, its start unknown until its first record; without
        # 2, partition 2 was revoked since the poll (its records are dropped).
        owned = set(group)
        del start_positions[5]
    want_positions = dict(start_positions)
    want = reference(spec, want_positions, msgs, owned)
    for encode in (streams.encode_python, streams.encode_compiled):
        got_positions = dict(start_positions)
        got = encode(spec, msgspec.json.encode(TOPIC), got_positions, msgs, owned)
        assert got == want
        assert got_positions == want_positions


@settings(max_examples=300, deadline=None)
@given(records, formats, formats, starts, st.sampled_from([(0, 2, 5), tuple(range(64))]))
def test_compiled_chunk_is_the_plain_frames(
    recs: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int]],
    key_format: codec.Format,
    value_format: codec.Format,
    start: int,
    partitions: tuple[int, ...],
) -> None:
    # The common stream (assign mode, no key= or filter=), and 64 partitions: the cursor's bytes are
    # rewritten in C for many varints per event.
    spec = streams.StreamSpec(TopicInfo(TOPIC, 64), partitions, "earliest", None, None, key_format, value_format)
    start_positions = {p: start + p for p in partitions}
    next_offset = dict(start_positions)
    msgs = []
    for p, k, v, h, ts in recs:
        msgs.append(
            Message(topic=TOPIC, partition=p, offset=next_offset[p], key=k, value=v, headers=h, timestamp=(1, ts))
        )
        next_offset[p] += 1
    want_positions = dict(start_positions)
    want = reference(spec, want_positions, msgs)
    got_positions = dict(start_positions)
    assert streams.encode_compiled(spec, msgspec.json.encode(TOPIC), got_positions, msgs) == want
    assert got_positions == want_positions


def test_the_compiled_encoder_is_built() -> None:
    # pip install builds it (pyproject.toml's ext-modules); without it every stream takes the Python
    # loop, correct but 2.6 times the instructions per event (bench/RESULTS.md).
    import gateway._frames  # noqa: F401


@pytest.mark.parametrize("encode", [streams.encode_python, streams.encode_compiled])
def test_in_band_errors_are_skipped_and_fatal_ones_end_the_stream(encode: object) -> None:
    spec = streams.StreamSpec(TopicInfo(TOPIC, 1), (0,), "earliest", None, None, "string", "json")
    record = Message(topic=TOPIC, partition=0, offset=3, key=b"k", value=b"1", timestamp=(1, 5))
    later = Message(topic=TOPIC, partition=0, offset=4, key=b"k", value=b"2", timestamp=(1, 6))
    transient = Message(error=KafkaError(KafkaError._TRANSPORT, "broker down"))
    fatal = Message(error=KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    positions = {0: 3}
    chunk, events = encode(spec, b'"orders"', positions, [record, transient, later])  # type: ignore[operator]
    assert events == 2 and positions == {0: 5}
    assert chunk.count(b"event: record\n") == 2
    positions = {0: 3}
    with pytest.raises(KafkaException, match="fenced"):
        encode(spec, b'"orders"', positions, [record, fatal, later])  # type: ignore[operator]
    assert positions == {0: 4}


def test_records_of_other_topics_or_partitions_are_skipped() -> None:
    spec = streams.StreamSpec(TopicInfo(TOPIC, 6), (0,), "earliest", None, None, "string", "json")
    msgs = [
        Message(topic="other", partition=0, offset=3, key=b"k", value=b"1", timestamp=(1, 5)),
        Message(topic=TOPIC, partition=4, offset=3, key=b"k", value=b"1", timestamp=(1, 5)),
        Message(topic=TOPIC, partition=0, offset=3, key=b"k", value=b"1", timestamp=(1, 5)),
    ]
    positions = {0: 3}
    chunk, events = streams.encode_batch(spec, b'"orders"', positions, msgs)
    assert events == 1 and positions == {0: 4}
    assert chunk.startswith(b"id: " + cursor.encode(TOPIC, {0: 4}).encode() + b"\nevent: record\n")


def test_polls_take_fewer_records_when_events_are_large() -> None:
    # Small events: the whole batch; 1 KB events: about CHUNK_BYTES of them; never below one record.
    assert streams.next_batch(2000, 2000 * 240, 2000) == 2000
    assert streams.next_batch(2000, 0, 0) == 2000
    assert streams.next_batch(2000, 2000 * 1100, 2000) == streams.CHUNK_BYTES // 1100
    assert streams.next_batch(2000, 10 * 2**20, 1) == 1
