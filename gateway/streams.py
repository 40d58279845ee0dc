"""SSE streams of a topic: where they start, what they read, and the frames they produce (API.md §2.1).

A stream without a group ``assign()``s its partitions at exact positions (from a cursor, or resolved
from ``from=``) and never commits, so the first event comes in milliseconds and a cursor resumes it
on any process. Its consumer is borrowed from a pool of connected ones (``gateway.kafka.pool``) and
given back when the stream ends. Frames are built once per record and many go out in one write.
"""

from __future__ import annotations

import asyncio
import binascii
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from gateway import codec, cursor, errors, sse
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.metadata import TopicInfo
from gateway.kafka.offsets import Offsets
from gateway.kafka.pool import ConsumerPool

try:
    from gateway import _frames
except ImportError:  # a source tree without the compiled module: the Python loop does the same
    _frames = None  # type: ignore[assignment]
# False when SSE streams encode in Python only (the gateway says so at start-up).
COMPILED = _frames is not None


@dataclass(frozen=True)
class StreamSpec:
    topic: TopicInfo
    partitions: tuple[int, ...]
    start: str  # "earliest" | "latest" | "time"
    start_ms: int | None
    resume: dict[int, int] | None
    key_format: codec.Format
    value_format: codec.Format
    key: str | None = None
    filter_path: tuple[str, ...] | None = None
    filter_value: object = None


def parse_start(value: str | None) -> tuple[str, int | None]:
    if value is None or value == "latest":
        return "latest", None
    if value == "earliest":
        return "earliest", None
    try:
        return "time", codec.parse_timestamp(value if not value.isdigit() else int(value), "from")
    except errors.InvalidRecord as exc:
        raise errors.BadRequest(exc.message) from None


def parse_partitions(value: str | None, topic: TopicInfo) -> tuple[int, ...]:
    if not value:
        return tuple(range(topic.partitions))
    try:
        wanted = sorted({int(p) for p in value.split(",") if p.strip()})
    except ValueError:
        raise errors.BadRequest("'partitions' must be a comma-separated list of partition numbers.") from None
    for p in wanted:
        if not 0 <= p < topic.partitions:
            raise errors.PartitionNotFound(topic.name, p)
    if not wanted:
        raise errors.BadRequest("'partitions' names no partition.")
    return tuple(wanted)


def parse_filter(value: str | None) -> tuple[tuple[str, ...] | None, object]:
    """``field.path=value``: the value is JSON if it parses (``n=3``, ``ok=true``), else a string."""
    if not value:
        return None, None
    path, sep, raw = value.partition("=")
    if not sep or not path:
        raise errors.BadRequest("'filter' must look like field.path=value.")
    try:
        expected: object = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        expected = raw
    return tuple(path.split(".")), expected


def _matches(spec: StreamSpec, msg: Message) -> bool:
    if spec.key is not None:
        k = msg.key()
        if k is None or k.decode("utf-8", "replace") != spec.key:
            return False
    if spec.filter_path is not None:
        v = msg.value()
        try:
            node: object = msgspec.json.decode(v) if v is not None else None
        except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON, or a string in it not UTF-8
            return False
        for part in spec.filter_path:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return False
        return node == spec.filter_value
    return True


async def start_positions(offsets: Offsets, spec: StreamSpec) -> dict[int, int]:
    """Exact next offsets per partition, so the very first cursor already covers all of them."""
    topic = spec.topic.name
    if spec.resume is not None:
        missing = [p for p in spec.partitions if p not in spec.resume]
        extra = [p for p in spec.resume if p not in spec.partitions]
        if extra:
            raise errors.BadRequest("The cursor names partitions this stream does not read.")
        # Partitions added since the cursor was made start at their beginning.
        return {**spec.resume, **await offsets.earliest(topic, missing)}
    if spec.start == "time":
        assert spec.start_ms is not None
        found = await offsets.at_time(topic, spec.partitions, spec.start_ms)
        # No record that recent: start at the end, so the next record there is the first one after the time.
        none = [p for p, off in found.items() if off < 0]
        return {**found, **await offsets.latest(topic, none)}
    if spec.start == "earliest":
        return await offsets.earliest(topic, spec.partitions)
    return await offsets.latest(topic, spec.partitions)


def encode_batch(
    spec: StreamSpec, topic_json: bytes, positions: dict[int, int], msgs: list[Message], owned: set[int] | None = None
) -> tuple[bytes, int]:
    """Frames of one poll as one chunk, and how many events it holds; advances ``positions``.

    Every frame's id is the cursor after its record, so it names the next offset of every partition
    of the stream, including partitions whose records were filtered out. ``owned`` (group mode)
    drops records of partitions this stream no longer owns after a rebalance.

    This runs once per event of every stream (bench/RESULTS.md: the largest share of an SSE stream's
    CPU), so it is compiled (``gateway._frames``, 2.6 times fewer instructions per event than the
    Python loop, which remains for a source tree where it is not built). In both, a key or value that
    does not decode takes ``sse.record_data``'s path, which reports it in the event.
    """
    if not msgs:
        return b"", 0
    if _frames is not None:
        return encode_compiled(spec, topic_json, positions, msgs, owned)
    return encode_python(spec, topic_json, positions, msgs, owned)


def encode_compiled(
    spec: StreamSpec, topic_json: bytes, positions: dict[int, int], msgs: list[Message], owned: set[int] | None = None
) -> tuple[bytes, int]:
    """``encode_batch`` by the compiled loop (``gateway._frames``)."""
    assert _frames is not None
    topic = spec.topic.name

    def slow(msg: Message, token: bytes) -> bytes:
        return _reference_frame(spec, topic_json, msg, token)

    def match(msg: Message) -> bool:
        return _matches(spec, msg)

    plain = spec.key is None and spec.filter_path is None
    return _frames.encode(
        topic, topic_json, zlib.crc32(topic.encode()), positions, msgs, owned,
        _FORMAT_CODES[spec.key_format], _FORMAT_CODES[spec.value_format], _valid, _enc,
        None if plain else match, _raise_fatal, slow,
    )  # fmt: skip


def _raise_fatal(err: KafkaError) -> None:
    # A fatal in-band error ends the stream with ``event: error`` (the client resumes with its last id);
    # librdkafka reports transient broker trouble in-band too and recovers by itself. Kafka's ACLs refusing
    # the gateway's user Read never recover by themselves: an idle stream would hide them.
    if err.fatal():
        raise KafkaException(err)
    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise errors.KafkaDenied("read", None, err.str())


def _reference_frame(spec: StreamSpec, topic_json: bytes, msg: Message, token: bytes) -> bytes:
    """The event by the plain definitions: what both loops send for a record they do not write inline."""
    value = msg.value()
    data = sse.record_data(
        topic_json, msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), value, msg.headers(),  # type: ignore[arg-type]
        spec.key_format, spec.value_format,
    )  # fmt: skip
    return sse.frame(token, data, value is None)


def encode_python(
    spec: StreamSpec, topic_json: bytes, positions: dict[int, int], msgs: list[Message], owned: set[int] | None = None
) -> tuple[bytes, int]:
    """``encode_batch`` in Python, for a gateway whose ``gateway._frames`` is not built."""
    topic = spec.topic.name
    out: list[bytes] = []
    append = out.append
    plain = spec.key is None and spec.filter_path is None
    key_json, key_str = spec.key_format == "json", spec.key_format == "string"
    value_json, value_str = spec.value_format == "json", spec.value_format == "string"
    # Built per poll (positions may have changed between polls, e.g. on a rebalance); cheap per record.
    cursors = cursor.Builder(topic, positions)
    step = cursors.step
    # The frame of a record without headers, the topic written in (fewer values to format per event).
    record = _RECORD_HEAD + topic_json.replace(b"%", b"%%") + _RECORD_TAIL
    for msg in msgs:
        err = msg.error()
        if err is not None:
            _raise_fatal(err)
            continue
        # A consumed message always has partition, offset and list-shaped headers.
        p: int = msg.partition()  # type: ignore[assignment]
        offset: int = msg.offset()  # type: ignore[assignment]
        if owned is None:
            # Assign mode reads exactly the partitions in ``positions`` of one topic. A record of any
            # other (a reused consumer's previous stream could only leak one if librdkafka failed to
            # discard it) is never sent and never enters the cursor.
            if p not in positions or msg.topic() != topic:
                continue
        elif p not in owned:
            continue
        positions[p] = offset + 1
        if not plain and not _matches(spec, msg):
            if p in cursors:
                cursors.advance(p, offset + 1)
            else:  # a partition whose start was unknown until now (group mode)
                cursors = cursor.Builder(topic, positions)
                step = cursors.step
            continue
        try:
            token = step(p, offset + 1)
        except KeyError:  # a partition whose start was unknown until now (group mode)
            cursors = cursor.Builder(topic, positions)
            step = cursors.step
            token = cursors.token_bytes()
        key, value = msg.key(), msg.value()
        headers: list[tuple[str, bytes | None]] | None = msg.headers()  # type: ignore[assignment]
        try:
            if key is None:
                k = codec.NULL
            elif key_str:
                k = _enc(key.decode("utf-8"))
            elif key_json:
                # codec.decode's json case, inline.
                _valid(key)
                if not key.isascii():
                    key.decode("utf-8")
                k = key.translate(_ONE_LINE)
            else:
                k = b'"' + _b64(key, newline=False) + b'"'
            if value is None:
                v = codec.NULL
            elif value_json:
                _valid(value)
                if not value.isascii():
                    value.decode("utf-8")
                v = value.translate(_ONE_LINE)
            elif value_str:
                v = _enc(value.decode("utf-8"))
            else:
                v = b'"' + _b64(value, newline=False) + b'"'
        except (msgspec.DecodeError, UnicodeDecodeError):
            append(_reference_frame(spec, topic_json, msg, token))
            continue
        if headers or value is None:
            kind = b"tombstone" if value is None else b"record"
            hdrs = sse.headers_json(headers) if headers else b"{}"
            append(_FRAME % (token, kind, topic_json, p, offset, msg.timestamp()[1], k, v, hdrs))
        else:
            append(record % (token, p, offset, msg.timestamp()[1], k, v))
    return b"".join(out), len(out)


# sse.frame around sse.record_data's common case, as one format.
_FRAME = (
    b"id: %b\nevent: %b\ndata: "
    b'{"topic":%b,"partition":%d,"offset":%d,"timestamp":%d,"key":%b,"value":%b,"headers":%b}\n\n'
)
_RECORD_HEAD = b'id: %b\nevent: record\ndata: {"topic":'
_RECORD_TAIL = b',"partition":%d,"offset":%d,"timestamp":%d,"key":%b,"value":%b,"headers":{}}\n\n'
_enc = msgspec.json.encode
_valid = codec.validate_json
_FORMAT_CODES = {"json": 0, "string": 1, "binary": 2}
_ONE_LINE = codec.ONE_LINE
_b64 = binascii.b2a_base64


async def open_assigned(pool: ConsumerPool, offsets: Offsets, spec: StreamSpec) -> tuple[AsyncConsumer, dict[int, int]]:
    """A consumer from the pool and the stream's exact start positions, found at the same time.

    A pooled consumer comes at once; a new one connects while the admin client (connected already)
    resolves the positions. If the positions cannot be found, the consumer goes back to the pool.
    """
    borrow = asyncio.ensure_future(pool.acquire())
    try:
        positions = await start_positions(offsets, spec)
        consumer = await asyncio.shield(borrow)
    except BaseException:
        # Shielded: the consumer must reach the pool (or be closed) even when this request is cancelled.
        await asyncio.shield(_give_back(pool, borrow))
        raise
    return consumer, positions


async def _give_back(pool: ConsumerPool, borrow: asyncio.Future[AsyncConsumer]) -> None:
    try:
        consumer = await borrow
    except Exception:
        return  # no consumer was made; the caller's own error is the one to report
    await pool.release(consumer)


# A poll's chunk is written in one piece: large records take fewer per poll, so a stream whose client
# is slow holds about this much encoded (and as much again in the records behind it), not
# ``batch_max_records`` times the record size.
CHUNK_BYTES = 512 * 1024


def next_batch(batch: int, chunk_bytes: int, events: int) -> int:
    """Records to ask for next: ``batch``, or fewer when the last poll's events were large."""
    if not events or chunk_bytes * batch <= CHUNK_BYTES * events:
        return batch
    return max(1, CHUNK_BYTES * events // chunk_bytes)


async def assigned_frames(
    consumer: AsyncConsumer,
    spec: StreamSpec,
    positions: dict[int, int],
    batch: int,
    poll_s: float,
    first_batch: int | None = None,
) -> AsyncGenerator[tuple[bytes, int], None]:
    """Endless (chunk, events) for an assign-mode stream; each chunk holds every record of one poll.

    The first poll takes at most ``first_batch`` records: on a populated topic the first event then
    goes out without waiting for a full batch to be encoded (2,000 records cost ~12 ms). An idle poll
    yields ``(b"", 0)`` so the caller can notice shutdown between polls.
    """
    topic_json = msgspec.json.encode(spec.topic.name)
    try:
        await consumer.assign([TopicPartition(spec.topic.name, p, off) for p, off in positions.items()])
        size = min(batch, first_batch or batch)
        while True:
            msgs = await consumer.consume(size, poll_s)
            chunk, events = encode_batch(spec, topic_json, positions, msgs)
            if msgs:
                size = next_batch(batch, len(chunk), events)
            yield chunk, events
    except Exception:
        # A stream that failed (a fatal in-band error, say) does not give its consumer to the next one.
        consumer.broken = True
        raise
