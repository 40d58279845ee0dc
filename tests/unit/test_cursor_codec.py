"""Property tests of the pure pieces: cursors and codecs."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import codec, cursor, errors, sse

positions = st.dictionaries(st.integers(0, 10_000), st.integers(0, 2**62), max_size=128)


@given(positions, st.text(min_size=1, max_size=40))
def test_cursor_round_trips(pos: dict[int, int], topic: str) -> None:
    assert cursor.decode(topic, cursor.encode(topic, pos)) == pos


def test_cursor_is_compact_for_64_partitions() -> None:
    token = cursor.encode("orders", {p: 10_000_000_000 + p for p in range(64)})
    assert len(token) <= 1024


@given(st.text(max_size=200))
def test_garbage_cursor_is_a_bad_request(token: str) -> None:
    try:
        cursor.decode("orders", token)
    except errors.BadRequest:
        pass


def test_cursor_of_another_topic_is_refused() -> None:
    token = cursor.encode("a", {0: 5})
    with pytest.raises(errors.BadRequest):
        cursor.decode("b", token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_format_round_trips_and_stays_on_one_line(value: object) -> None:
    pretty = json.dumps(value, indent=2).encode()
    stored = codec.encode(pretty, "json", "value")
    shown = codec.decode(stored, "json")
    assert b"\n" not in shown and b"\r" not in shown
    assert json.loads(shown) == value


@given(json_values, st.sampled_from(["\n", "\r\n", "\r"]))
def test_json_stored_by_others_with_line_breaks_is_shown_on_one_line(value: object, newline: str) -> None:
    stored = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", newline).encode()
    shown = codec.decode(stored, "json")
    assert b"\n" not in shown and b"\r" not in shown
    assert json.loads(shown) == value


def test_json_with_invalid_utf8_is_a_decode_error_not_sent_as_is() -> None:
    with pytest.raises(codec.DecodeFailure, match="not valid UTF-8"):
        codec.decode(b'{"name":"caf\xe9"}', "json")
    data = json.loads(sse.record_data(b'"t"', 0, 1, 2, None, b'{"name":"caf\xe9"}', None, "string", "json"))
    assert base64.b64decode(data["value_b64"]) == b'{"name":"caf\xe9"}'
    assert data["decode_error"].startswith("value not valid UTF-8")


@given(st.text())
def test_string_format_writes_utf8_text(text: str) -> None:
    stored = codec.encode(json.dumps(text).encode(), "string", "key")
    assert stored == text.encode()
    assert json.loads(codec.decode(stored, "string")) == text


@given(st.binary())
def test_binary_format_writes_decoded_bytes(data: bytes) -> None:
    stored = codec.encode(json.dumps(base64.b64encode(data).decode()).encode(), "binary", "value")
    assert stored == data
    assert base64.b64decode(json.loads(codec.decode(stored, "binary"))) == data


@given(st.binary())
def test_sse_frames_never_break_on_record_content(data: bytes) -> None:
    line = sse.record_data(b'"t"', 0, 1, 2, data, data, [("h", data)], "string", "json")
    assert b"\n" not in line and b"\r" not in line
    parsed = json.loads(line)
    assert parsed["offset"] == 1


def test_rfc3339_and_epoch_timestamps() -> None:
    assert codec.parse_timestamp("2024-01-02T03:04:05.678Z") == 1704164645678
    assert codec.parse_timestamp(1704164645678) == 1704164645678
    with pytest.raises(errors.InvalidRecord):
        codec.parse_timestamp("yesterday")
    with pytest.raises(errors.InvalidRecord):
        codec.parse_timestamp("2024-01-02T03:04:05")
