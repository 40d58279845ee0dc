# cython: language_level=3, boundscheck=False, wraparound=False
"""``records.prepare`` compiled: the per-record loop of every produce request (see ``gateway.records``).

Same rules as before it was compiled; what C buys here is the check that a ``json`` value is already
compact ASCII text (the common case: written as it came, no ``msgspec.json.format`` and no UTF-8
decode), one pass over its bytes instead of ``split()`` building a list, and cheaper locals. Nothing is
copied that need not be: a compact ``json`` value stays the ``msgspec.Raw`` that points into the request
body, a ``string`` key or value stays the ``str`` it was decoded to (the producer takes its UTF-8
without a copy); ``gateway.kafka._rdkafka`` reads either in place.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memcmp

from types import MemberDescriptorType


cdef extern from "Python.h":
    # CPython's member descriptors (``__slots__``, and msgspec's struct fields): where the field lives.
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member

from msgspec import Raw

from gateway import codec, errors

JSON_NULL = Raw(b"null")
# Epoch milliseconds Kafka and librdkafka accept: 1 (0 means "now" to librdkafka) to year 9999.
MAX_TIMESTAMP_MS = 253_402_300_799_999


# Bytes that make JSON text need ``codec.json_bytes``: bytes.split()'s whitespace, and anything outside ASCII.
cdef unsigned char _NOT_PLAIN[256]
for _c in range(256):
    _NOT_PLAIN[_c] = _c >= 128 or _c == 32 or 9 <= _c <= 13
del _c


# The record fields ``prepare`` reads, and where the last record type it saw keeps them. msgspec stores a
# struct's fields at fixed offsets behind member descriptors; reading them there skips the attribute
# look-up (through the struct type's four-class MRO), which cost more than the rest of ``prepare``.
_FIELDS = ("value", "key", "headers", "partition", "timestamp")
cdef object _layout_of = None
cdef Py_ssize_t _offsets[5]
cdef bint _direct = False


cdef void _learn(object kind):
    global _layout_of, _direct
    cdef Py_ssize_t i
    _direct = False
    _layout_of = kind
    found = [kind.__dict__.get(name) for name in _FIELDS]
    for descr in found:
        if type(descr) is not MemberDescriptorType:
            return  # not a layout known here: plain attribute access
    for i in range(5):
        _offsets[i] = (<PyMemberDescrObject *>(<PyObject *>found[i])).d_member.offset
    _direct = True


cdef inline object _field(object rec, Py_ssize_t i):
    cdef PyObject *p
    if _direct:
        p = (<PyObject **>((<char *><PyObject *>rec) + _offsets[i]))[0]
        if p != NULL:
            return <object>p
    return getattr(rec, _FIELDS[i])


cdef object _json_value(object raw):
    """A ``json`` key or value as Kafka gets it: ``None`` for ``null``, else compact UTF-8 JSON text.

    Text that is already compact ASCII (no whitespace byte, nothing outside ASCII: decided in one C pass)
    is returned as it is, the ``Raw`` itself; anything else goes through ``codec.json_bytes``."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t i, n
    cdef bint compact = True
    PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char *>view.buf
        n = view.len
        if n == 4 and memcmp(p, b"null", 4) == 0:
            return None
        for i in range(n):
            if _NOT_PLAIN[p[i]]:
                compact = False
                break
    finally:
        PyBuffer_Release(&view)
    return raw if compact else codec.json_bytes(bytes(raw))


cdef Py_ssize_t _utf8_size(str text) except -1:
    """Bytes of ``text`` in UTF-8 (for ASCII text, CPython's own buffer: nothing is built)."""
    cdef Py_ssize_t n
    PyUnicode_AsUTF8AndSize(text, &n)
    return n


cdef Py_ssize_t _size(object data) except -1:
    if data is None:
        return 0
    if type(data) is str:
        return _utf8_size(<str>data)
    return len(data)


def timestamp_ms(value):
    """A record timestamp (epoch ms or RFC 3339) in the range Kafka and librdkafka accept."""
    ms = codec.parse_timestamp(value)
    if not 0 < ms <= MAX_TIMESTAMP_MS:
        raise errors.InvalidRecord(f"timestamp must be epoch milliseconds from 1 to {MAX_TIMESTAMP_MS}; got {ms}.")
    return ms


def prepare(list items, formats, Py_ssize_t max_record_bytes, extra_headers=None, where=None):
    """Validate decoded records and make them ready for the producer (``Prepared``), all or none.

    Errors name the record: ``where`` when given (``record``, ``line 7``), else ``records[i]``.
    """
    cdef list out = []
    cdef bint key_json = formats.key == "json"
    cdef bint value_json = formats.value == "json"
    cdef Py_ssize_t i = 0, size
    try:
        for i in range(len(items)):
            rec = items[i]
            if type(rec) is not _layout_of:
                _learn(type(rec))
            value = _field(rec, 0)
            if value_json:
                value = _json_value(value)
            key = _field(rec, 1)
            if key_json and key is not None:
                key = _json_value(key)
            # A ``string`` key or value stays the str it was decoded to; ``binary`` ones are bytes already.
            size = _size(value) + _size(key)
            headers = None
            given = _field(rec, 2)
            if given:
                headers = [(name, text.encode()) for name, text in given.items()]
                for name, text in headers:
                    size += len(name) + len(text)
            if extra_headers:
                headers = extra_headers if headers is None else headers + extra_headers
            if size > max_record_bytes:
                raise errors.PayloadTooLarge(f"{size} bytes is over the limit of {max_record_bytes} bytes per record.")
            timestamp = _field(rec, 4)
            partition = _field(rec, 3)
            out.append(
                (
                    value,
                    key,
                    headers,
                    -1 if partition is None else partition,
                    0 if timestamp is None else timestamp_ms(timestamp),
                    size,
                )
            )
    except errors.GatewayError as exc:
        exc.message = f"{where or f'records[{i}]'}: {exc.message}"
        exc.args = (exc.message,)
        raise
    return out


def total_size(records):
    """The bytes of ``Prepared`` records together (their last field), without a Python step per record."""
    cdef Py_ssize_t total = 0
    for rec in records:
        total += <Py_ssize_t>(<tuple?>rec)[5]
    return total


def beyond(records, Py_ssize_t partitions):
    """Indexes of the ``Prepared`` records that name a partition the topic does not have."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    for rec in records:
        if <Py_ssize_t>(<tuple?>rec)[3] >= partitions:
            out.append(i)
        i += 1
    return out
