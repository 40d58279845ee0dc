# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The SSE encoding loop of ``gateway.streams.encode_batch``, compiled.

``encode`` returns the same bytes as ``streams.encode_python`` (the property tests in
tests/unit/test_sse_frames.py compare both with the plain definitions). It writes each event's cursor
(``gateway.cursor``'s layout), integers, keys and values straight into one buffer, so an event costs a
handful of C calls (the ``Message`` accessors and msgspec's JSON check) instead of some twenty
Python-level ones (bench/RESULTS.md). Anything uncommon -- an in-band error, headers, a tombstone, a
key or value that needs JSON escaping or does not decode, ``key=`` / ``filter=`` -- goes through
Python callbacks, one record at a time.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

import msgspec
from confluent_kafka import Message

_m_error = Message.error
_m_partition = Message.partition
_m_offset = Message.offset
_m_topic = Message.topic
_m_key = Message.key
_m_value = Message.value
_m_headers = Message.headers
_m_timestamp = Message.timestamp
_DecodeError = msgspec.DecodeError

cdef uint32_t _CRC[256]
cdef const char* _B64STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


cdef void _crc_table():
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = <uint32_t>n
        for k in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        _CRC[n] = c


_crc_table()


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef int _reserve(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t want = b.size + extra
    cdef Py_ssize_t cap
    cdef char* grown
    if want <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap * 2 > want else want
    grown = <char*>realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef inline void _put(Buf* b, const char* s, Py_ssize_t n) noexcept:
    memcpy(b.data + b.size, s, n)
    b.size += n


cdef inline void _put_int(Buf* b, int64_t v) noexcept:
    # Decimal, as ``%d`` writes it.
    cdef char tmp[24]
    cdef int i = 24
    cdef bint neg = v < 0
    cdef uint64_t u = (<uint64_t>0 - <uint64_t>v) if neg else <uint64_t>v
    while True:
        i -= 1
        tmp[i] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if neg:
        i -= 1
        tmp[i] = 45
    _put(b, &tmp[i], 24 - i)


cdef inline Py_ssize_t _varint(uint8_t* out, uint64_t n) noexcept:
    cdef Py_ssize_t i = 0
    while n >= 0x80:
        out[i] = <uint8_t>((n & 0x7F) | 0x80)
        n >>= 7
        i += 1
    out[i] = <uint8_t>n
    return i + 1


cdef Py_ssize_t _base64(char* out, const uint8_t* src, Py_ssize_t n, const char* alphabet, bint pad) noexcept:
    cdef Py_ssize_t i = 0, o = 0
    cdef uint32_t v
    while i + 3 <= n:
        v = (<uint32_t>src[i] << 16) | (<uint32_t>src[i + 1] << 8) | src[i + 2]
        out[o] = alphabet[v >> 18]
        out[o + 1] = alphabet[(v >> 12) & 63]
        out[o + 2] = alphabet[(v >> 6) & 63]
        out[o + 3] = alphabet[v & 63]
        i += 3
        o += 4
    if n - i == 1:
        v = <uint32_t>src[i] << 16
        out[o] = alphabet[v >> 18]
        out[o + 1] = alphabet[(v >> 12) & 63]
        o += 2
        if pad:
            out[o] = 61
            out[o + 1] = 61
            o += 2
    elif n - i == 2:
        v = (<uint32_t>src[i] << 16) | (<uint32_t>src[i + 1] << 8)
        out[o] = alphabet[v >> 18]
        out[o + 1] = alphabet[(v >> 12) & 63]
        out[o + 2] = alphabet[(v >> 6) & 63]
        o += 3
        if pad:
            out[o] = 61
            o += 1
    return o


cdef class _Cursor:
    """The stream's positions in C arrays and its token, rewritten per event (``gateway.cursor`` v1)."""

    cdef Py_ssize_t count
    cdef int64_t* parts
    cdef int64_t* offs
    cdef Py_ssize_t* slot  # partition -> index in parts, -1 if not read; sized max partition + 1
    cdef Py_ssize_t slots
    cdef uint32_t seed
    cdef uint8_t* raw
    cdef char* token
    cdef Py_ssize_t token_len

    def __cinit__(self, uint32_t seed, positions):
        cdef Py_ssize_t i
        keys = sorted(positions)
        if keys and keys[0] < 0:
            raise ValueError("partitions are never negative")
        self.count = len(keys)
        self.seed = seed
        self.slots = (max(keys) + 1) if keys else 0
        self.parts = <int64_t*>malloc(sizeof(int64_t) * (self.count + 1))
        self.offs = <int64_t*>malloc(sizeof(int64_t) * (self.count + 1))
        self.slot = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (self.slots + 1))
        # version + count varint + per partition two 10-byte varints + crc
        self.raw = <uint8_t*>malloc(16 + 20 * self.count)
        self.token = <char*>malloc(32 + 28 * self.count)
        if not (self.parts and self.offs and self.slot and self.raw and self.token):
            raise MemoryError()
        for i in range(self.slots):
            self.slot[i] = -1
        for i in range(self.count):
            self.parts[i] = keys[i]
            self.offs[i] = positions[keys[i]]
            self.slot[keys[i]] = i
        self.token_len = 0

    def __dealloc__(self):
        free(self.parts)
        free(self.offs)
        free(self.slot)
        free(self.raw)
        free(self.token)

    cdef inline Py_ssize_t index(self, int64_t partition) noexcept:
        if partition < 0 or partition >= self.slots:
            return -1
        return self.slot[partition]

    cdef void encode(self) noexcept:
        cdef uint8_t* raw = self.raw
        cdef Py_ssize_t n = 1, i
        cdef int64_t prev = 0
        cdef uint32_t c
        raw[0] = 1
        n += _varint(raw + n, <uint64_t>self.count)
        for i in range(self.count):
            n += _varint(raw + n, <uint64_t>(self.parts[i] - prev))
            n += _varint(raw + n, <uint64_t>self.offs[i])
            prev = self.parts[i]
        c = self.seed ^ 0xFFFFFFFF
        for i in range(n):
            c = _CRC[(c ^ raw[i]) & 0xFF] ^ (c >> 8)
        c ^= 0xFFFFFFFF
        raw[n] = <uint8_t>(c >> 24)
        raw[n + 1] = <uint8_t>(c >> 16)
        raw[n + 2] = <uint8_t>(c >> 8)
        raw[n + 3] = <uint8_t>c
        self.token_len = _base64(self.token, raw, n + 4, _B64URL, False)

    def write_back(self, positions):
        cdef Py_ssize_t i
        for i in range(self.count):
            positions[self.parts[i]] = self.offs[i]


cdef inline bint _plain_ascii(const uint8_t* s, Py_ssize_t n) noexcept:
    # Text a JSON string holds as it is: printable ASCII without '"' and '\'.
    cdef Py_ssize_t i
    cdef uint8_t ch
    for i in range(n):
        ch = s[i]
        if ch < 0x20 or ch > 0x7E or ch == 34 or ch == 92:
            return False
    return True


cdef int _put_json(Buf* b, bytes data, object valid) except -1:
    """A JSON key or value as stored, line breaks as spaces (``codec.ONE_LINE``); raises as codec.decode."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i
    cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef uint8_t ch, high = 0
    cdef char* out
    valid(data)
    _reserve(b, n)
    out = b.data + b.size
    for i in range(n):
        ch = s[i]
        high |= ch
        out[i] = 32 if (ch == 10 or ch == 13) else <char>ch
    if high & 0x80:
        PyUnicode_DecodeUTF8(<const char*>s, n, NULL)
    b.size += n
    return 0


cdef int _put_field(Buf* b, bytes data, int fmt, object valid, object enc) except -1:
    """Key or value (not null) in its format: 0 json, 1 string, 2 binary."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef bytes escaped
    if fmt == 0:
        return _put_json(b, data, valid)
    if fmt == 1:
        if _plain_ascii(s, n):
            _reserve(b, n + 2)
            _put(b, "\"", 1)
            _put(b, <const char*>s, n)
            _put(b, "\"", 1)
        else:
            escaped = enc(data.decode("utf-8"))
            _reserve(b, PyBytes_GET_SIZE(escaped))
            _put(b, PyBytes_AS_STRING(escaped), PyBytes_GET_SIZE(escaped))
        return 0
    _reserve(b, (n + 2) // 3 * 4 + 2)
    _put(b, "\"", 1)
    b.size += _base64(b.data + b.size, s, n, _B64STD, True)
    _put(b, "\"", 1)
    return 0


def encode(
    str topic,
    bytes topic_json,
    uint32_t seed,
    dict positions,
    list msgs,
    object owned,
    int key_fmt,
    int value_fmt,
    object valid,
    object enc,
    object match,
    object on_error,
    object slow,
):
    """(chunk, events) of one poll; advances ``positions`` as ``streams.encode_python`` does.

    ``seed`` is ``zlib.crc32`` of the topic name; ``owned`` the partitions a group-mode stream owns
    (None: assign mode); formats 0 json, 1 string, 2 binary; ``valid`` checks a JSON text (raises
    ``msgspec.DecodeError``) and ``enc`` is ``msgspec.json.encode``; ``match(msg)`` says whether a
    record passes ``key=`` / ``filter=`` (None: every record does); ``on_error(err)`` raises for a
    fatal in-band error; ``slow(msg, token)`` returns the frame of an event this loop does not write.
    """
    cdef _Cursor cur = _Cursor(seed, positions)
    cdef Buf b
    cdef Py_ssize_t idx, mark, events = 0
    cdef int64_t p, offset
    cdef bytes key, value, frame
    cdef bytes head = b'\nevent: record\ndata: {"topic":' + topic_json + b',"partition":'
    cdef Py_ssize_t head_len = PyBytes_GET_SIZE(head)
    b.data = NULL
    b.size = 0
    b.cap = 0
    try:
        _reserve(&b, 256 * len(msgs) + 64)
        for msg in msgs:
            err = _m_error(msg)
            if err is not None:
                cur.write_back(positions)
                on_error(err)
                continue
            p = _m_partition(msg)
            offset = _m_offset(msg)
            idx = cur.index(p)
            if owned is None:
                # Assign mode reads exactly the partitions of ``positions`` of one topic.
                if idx < 0 or _m_topic(msg) != topic:
                    continue
            elif p not in owned:
                continue
            elif idx < 0:
                # Group mode: a partition whose start was unknown until its first record.
                cur.write_back(positions)
                positions[p] = offset + 1
                cur = _Cursor(seed, positions)
                idx = cur.index(p)
            cur.offs[idx] = offset + 1
            if match is not None and not match(msg):
                continue
            cur.encode()
            key = _m_key(msg)
            value = _m_value(msg)
            hdrs = _m_headers(msg)
            if value is None or hdrs:
                frame = slow(msg, PyBytes_FromStringAndSize(cur.token, cur.token_len))
                _reserve(&b, PyBytes_GET_SIZE(frame))
                _put(&b, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
                events += 1
                continue
            mark = b.size
            _reserve(&b, cur.token_len + head_len + 160)
            _put(&b, "id: ", 4)
            _put(&b, cur.token, cur.token_len)
            _put(&b, PyBytes_AS_STRING(head), head_len)
            _put_int(&b, p)
            _put(&b, ',"offset":', 10)
            _put_int(&b, offset)
            _put(&b, ',"timestamp":', 13)
            _put_int(&b, _m_timestamp(msg)[1])
            _put(&b, ',"key":', 7)
            try:
                if key is None:
                    _put(&b, "null", 4)
                else:
                    _put_field(&b, key, key_fmt, valid, enc)
                _reserve(&b, 10)
                _put(&b, ',"value":', 9)
                _put_field(&b, value, value_fmt, valid, enc)
            except (_DecodeError, UnicodeDecodeError):
                b.size = mark
                frame = slow(msg, PyBytes_FromStringAndSize(cur.token, cur.token_len))
                _reserve(&b, PyBytes_GET_SIZE(frame))
                _put(&b, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
                events += 1
                continue
            _reserve(&b, 16)
            _put(&b, ',"headers":{}}\n\n', 16)
            events += 1
        cur.write_back(positions)
        return PyBytes_FromStringAndSize(b.data, b.size), events
    finally:
        free(b.data)
