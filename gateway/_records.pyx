# cython: language_level=3, boundscheck=False, wraparound=False
"""``records.prepare`` compiled: the per-record loop of every produce request (see ``gateway.records``).

Same rules as before it was compiled; what C buys here is the check that a ``json`` value is already
compact ASCII text (the common case: written as it came, no ``msgspec.json.format`` and no UTF-8
decode), one pass over its bytes instead of ``split()`` building a list, and cheaper locals.
"""

from msgspec import Raw

from gateway import codec, errors

JSON_NULL = Raw(b"null")
# Epoch milliseconds Kafka and librdkafka accept: 1 (0 means "now" to librdkafka) to year 9999.
MAX_TIMESTAMP_MS = 253_402_300_799_999


cdef bytes _json_bytes(object raw):
    """``codec.json_bytes``, with its common case (compact ASCII text) decided in one C pass."""
    cdef bytes text = bytes(raw)
    cdef const unsigned char *p = text
    cdef Py_ssize_t i, n = len(text)
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        # bytes.split()'s whitespace, or a byte outside ASCII: the general path decides.
        if c >= 128 or c == 32 or 9 <= c <= 13:
            return codec.json_bytes(text)
    return text


def timestamp_ms(value):
    """A record timestamp (epoch ms or RFC 3339) in the range Kafka and librdkafka accept."""
    ms = codec.parse_timestamp(value)
    if not 0 < ms <= MAX_TIMESTAMP_MS:
        raise errors.InvalidRecord(f"timestamp must be epoch milliseconds from 1 to {MAX_TIMESTAMP_MS}; got {ms}.")
    return ms


def prepare(list items, formats, Py_ssize_t max_record_bytes, extra_headers=None, where=None):
    """Validate decoded records and encode them to Kafka bytes, all or none.

    Errors name the record: ``where`` when given (``record``, ``line 7``), else ``records[i]``.
    """
    cdef list out = []
    cdef bint key_json = formats.key == "json"
    cdef bint key_str = formats.key == "string"
    cdef bint value_json = formats.value == "json"
    cdef bint value_str = formats.value == "string"
    cdef Py_ssize_t i = 0, size
    try:
        for i in range(len(items)):
            rec = items[i]
            value = rec.value
            if value_json:
                value = None if value == JSON_NULL else _json_bytes(value)
            elif value_str and value is not None:
                value = value.encode()
            key = rec.key
            if key is not None:
                if key_json:
                    key = None if key == JSON_NULL else _json_bytes(key)
                elif key_str:
                    key = key.encode()
            size = (0 if value is None else len(value)) + (0 if key is None else len(key))
            headers = None
            if rec.headers:
                headers = [(name, text.encode()) for name, text in rec.headers.items()]
                for name, text in headers:
                    size += len(name) + len(text)
            if extra_headers:
                headers = extra_headers if headers is None else headers + extra_headers
            if size > max_record_bytes:
                raise errors.PayloadTooLarge(f"{size} bytes is over the limit of {max_record_bytes} bytes per record.")
            timestamp = rec.timestamp
            partition = rec.partition
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
