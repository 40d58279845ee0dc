# cython: language_level=3, boundscheck=False, wraparound=False
"""The producer's hot path on librdkafka directly: many records in, one report per batch out.

confluent-kafka's ``Producer`` builds a Python ``Message`` and calls back into Python (taking the GIL)
once per delivered record; at a hundred thousand records a second that per-record Python work is most of
what the gateway spends on Kafka. This module drives the very same librdkafka (the copy bundled with
confluent-kafka, which must be imported first: the extension links to that library by its soname) with
a C delivery callback: it writes each record's partition, offset, timestamp or error into its batch's
C array and counts the batch down, and only a finished batch comes back to Python, once. confluent-kafka
stays the client for everything else (consumers, admin, metadata).

No thread of its own: librdkafka signals a pipe when its queue of events becomes non-empty, and the
owner polls (``serve()``) on the event loop's thread when the pipe is readable. Delivery reports are
therefore only ever handled there (plain C, no GIL needed); errors, logs and statistics become calls to the
owner's Python handlers, which take the GIL themselves, since librdkafka may log from its own threads
before its log queue is set up.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, free

import logging


cdef extern from "_rdkafka.h" nogil:
    ctypedef struct rd_kafka_t:
        pass
    ctypedef struct rd_kafka_conf_t:
        pass
    ctypedef struct rd_kafka_topic_t:
        pass
    ctypedef struct rd_kafka_topic_conf_t:
        pass
    ctypedef struct rd_kafka_queue_t:
        pass
    ctypedef struct rd_kafka_headers_t:
        pass
    ctypedef int rd_kafka_resp_err_t
    ctypedef struct rd_kafka_message_t:
        rd_kafka_resp_err_t err
        int32_t partition
        int64_t offset
        void *_private
    enum:
        RD_KAFKA_RESP_ERR_NO_ERROR
        RD_KAFKA_RESP_ERR__FATAL
        RD_KAFKA_PRODUCER
        RD_KAFKA_CONF_OK
        RD_KAFKA_PURGE_F_QUEUE
        RD_KAFKA_PURGE_F_INFLIGHT

    rd_kafka_conf_t *rd_kafka_conf_new()
    void rd_kafka_conf_destroy(rd_kafka_conf_t *conf)
    int rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                          size_t errstr_size)
    void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque)
    void rd_kafka_conf_set_dr_msg_cb(
        rd_kafka_conf_t *conf, void (*cb)(rd_kafka_t *, const rd_kafka_message_t *, void *) noexcept nogil)
    void rd_kafka_conf_set_error_cb(
        rd_kafka_conf_t *conf, void (*cb)(rd_kafka_t *, int, const char *, void *) noexcept nogil)
    void rd_kafka_conf_set_log_cb(
        rd_kafka_conf_t *conf, void (*cb)(const rd_kafka_t *, int, const char *, const char *) noexcept nogil)
    void rd_kafka_conf_set_stats_cb(
        rd_kafka_conf_t *conf, int (*cb)(rd_kafka_t *, char *, size_t, void *) noexcept nogil)

    rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
    void rd_kafka_destroy(rd_kafka_t *rk)
    void *rd_kafka_opaque(const rd_kafka_t *rk)
    const char *rd_kafka_name(const rd_kafka_t *rk)
    int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms)
    int rd_kafka_outq_len(rd_kafka_t *rk)
    rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags)
    rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size)
    const char *rd_kafka_err2name(rd_kafka_resp_err_t err)
    int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage, void *tstype)

    rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf)
    void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt)

    rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk)
    void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu)
    void rd_kafka_queue_io_event_enable(rd_kafka_queue_t *rkqu, int fd, const void *payload, size_t size)
    rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu)

    rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count)
    void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs)
    rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name, Py_ssize_t name_size,
                                            const void *value, Py_ssize_t value_size)

    rd_kafka_resp_err_t gw_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                   const char *value, size_t value_len, const char *key, size_t key_len,
                                   int64_t timestamp, rd_kafka_headers_t *headers, void *opaque)


# One record handed to librdkafka: where its report goes (its batch and its index in the batch's
# results) and, once reported, what Kafka said.
cdef struct Slot:
    Pending *pending
    Py_ssize_t index
    int64_t size
    int err
    int32_t partition
    int64_t offset
    int64_t timestamp


# One batch in flight: its Python owner (a reference held until the batch is reported), its records'
# slots, and how many reports are still to come. Finished batches are chained on State.done.
cdef struct Pending:
    PyObject *batch
    Slot *slots
    Py_ssize_t count
    Py_ssize_t remaining
    Pending *next


# What librdkafka's callbacks reach through their opaque pointer.
cdef struct State:
    PyObject *owner
    Pending *done


# librdkafka's syslog levels -> Python logging levels.
_LOG_LEVELS = (50, 50, 50, 40, 30, 20, 20, 10)


cdef void _on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) noexcept nogil:
    # Per record, plain C: no Python object is touched or made here.
    cdef Slot *slot = <Slot *>msg._private
    cdef Pending *pending = slot.pending
    cdef State *state = <State *>opaque
    slot.err = msg.err
    slot.partition = msg.partition
    slot.offset = msg.offset
    slot.timestamp = rd_kafka_message_timestamp(msg, NULL)
    pending.remaining -= 1
    if pending.remaining == 0:
        pending.next = state.done
        state.done = pending


cdef void _on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) noexcept with gil:
    cdef char buf[512]
    cdef int code = err
    cdef bint fatal = err == RD_KAFKA_RESP_ERR__FATAL
    text = reason.decode("utf-8", "replace")
    if fatal:
        code = rd_kafka_fatal_error(rk, buf, sizeof(buf))
        text = buf.decode("utf-8", "replace")
    if (<State *>opaque).owner == NULL:  # the owner is being freed
        return
    owner = <object>(<State *>opaque).owner
    try:
        owner._error(code, rd_kafka_err2name(<rd_kafka_resp_err_t>code).decode(), text, fatal)
    except BaseException:
        logging.getLogger(__name__).exception("Kafka producer error handler failed")


cdef void _on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) noexcept with gil:
    cdef State *state = <State *>rd_kafka_opaque(rk)
    if state.owner == NULL:
        return
    owner = <object>state.owner
    logger = owner._logger
    if logger is None:
        return
    try:
        logger.log(_LOG_LEVELS[min(max(level, 0), 7)], "%s [%s] %s", fac.decode("utf-8", "replace"),
                   rd_kafka_name(rk).decode("utf-8", "replace"), buf.decode("utf-8", "replace"))
    except BaseException:
        pass


cdef int _on_stats(rd_kafka_t *rk, char *json, size_t size, void *opaque) noexcept with gil:
    if (<State *>opaque).owner == NULL:
        return 0
    owner = <object>(<State *>opaque).owner
    try:
        owner._stats(json[:size].decode("utf-8", "replace"))
    except BaseException:
        logging.getLogger(__name__).exception("Kafka statistics handler failed")
    return 0  # librdkafka frees the text


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# The API's result object for a delivered record, in the pieces ``Reports.json`` writes between the numbers.
cdef bytes _RESULTS_OPEN = b'{"results":['
cdef bytes _PARTITION = b'{"partition":'
cdef bytes _OFFSET = b',"offset":'
cdef bytes _TIMESTAMP = b',"timestamp":'
# The longest a result can be: the three names, an int32 and two int64s with signs, braces and a comma.
cdef Py_ssize_t _RESULT_MAX = 13 + 11 + 10 + 20 + 13 + 20 + 2


cdef const char *_payload(object data, Py_ssize_t *size, Py_buffer *view, bint *held) except? NULL:
    """Where a key or value's bytes are: ``bytes`` in place, a ``str`` as its UTF-8 (CPython's own buffer
    for ASCII text), anything else (``msgspec.Raw``: a slice of the request body) through a buffer view
    the caller releases once librdkafka has copied it. ``None`` is NULL."""
    if data is None:
        size[0] = 0
        return NULL
    if type(data) is bytes:
        size[0] = PyBytes_GET_SIZE(data)
        return PyBytes_AS_STRING(data)
    if type(data) is str:
        return PyUnicode_AsUTF8AndSize(data, size)
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    held[0] = True
    size[0] = view.len
    return <const char *>view.buf


cdef inline Py_ssize_t _put(char *out, bytes piece) noexcept:
    cdef Py_ssize_t n = len(piece)
    memcpy(out, <const char *>piece, n)
    return n


cdef Py_ssize_t _put_int(char *out, int64_t value) noexcept nogil:
    """``value`` in decimal, as JSON (and msgspec) write it; returns the characters written."""
    cdef char digits[20]
    cdef Py_ssize_t n = 0, i = 0
    cdef uint64_t u
    if value < 0:
        out[0] = 45  # '-'
        i = 1
        u = <uint64_t>(-(value + 1)) + 1
    else:
        u = <uint64_t>value
    while True:
        digits[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n > 0:
        n -= 1
        out[i] = digits[n]
        i += 1
    return i


cdef class Reports:
    """A finished batch's delivery reports (partition, offset, timestamp or error per record), as C data.

    ``fill`` turns the successes into ``delivered(partition, offset, timestamp)`` objects in a results list;
    ``json`` writes the produce route's whole answer for a batch whose every record was delivered, with no
    Python object per record on the way.
    """

    cdef Slot *_slots
    cdef Py_ssize_t _count
    cdef object _delivered
    cdef bint _filled

    def __dealloc__(self):
        free(self._slots)

    def fill(self, list results):
        """Put each delivered record's ``delivered(...)`` at its index in ``results`` (once)."""
        cdef Py_ssize_t i
        cdef Slot *slot
        if self._filled:
            return
        self._filled = True
        delivered = self._delivered
        for i in range(self._count):
            slot = &self._slots[i]
            if slot.err == 0:
                results[slot.index] = delivered(slot.partition, slot.offset, slot.timestamp)

    def json(self, Py_ssize_t total):
        """``{"results":[{"partition":P,"offset":O,"timestamp":T},...]}``: every one of ``total`` records
        delivered, in input order (``ValueError`` otherwise)."""
        cdef Py_ssize_t i, n = 0
        cdef Slot *slot
        if self._count != total:
            raise ValueError("not every record of the batch was produced")
        for i in range(self._count):
            if self._slots[i].err != 0 or self._slots[i].index != i:
                raise ValueError("not every record of the batch was delivered")
        cdef char *buf = <char *>malloc(len(_RESULTS_OPEN) + 2 + max(self._count, 1) * _RESULT_MAX)
        if buf == NULL:
            raise MemoryError()
        try:
            n = _put(buf, _RESULTS_OPEN)
            for i in range(self._count):
                slot = &self._slots[i]
                if i:
                    buf[n] = 44  # ','
                    n += 1
                n += _put(buf + n, _PARTITION)
                n += _put_int(buf + n, slot.partition)
                n += _put(buf + n, _OFFSET)
                n += _put_int(buf + n, slot.offset)
                n += _put(buf + n, _TIMESTAMP)
                n += _put_int(buf + n, slot.timestamp)
                buf[n] = 125  # '}'
                n += 1
            buf[n] = 93  # ']'
            buf[n + 1] = 125  # '}'
            return PyBytes_FromStringAndSize(buf, n + 2)
        finally:
            free(buf)


cdef class Producer:
    """A librdkafka producer whose delivery reports come back one finished batch at a time.

    ``conf`` is librdkafka configuration as for confluent-kafka, plus three optional callables:
    ``error_cb(code, name, text, fatal)``, ``stats_cb(json_text)`` and ``logger`` (a ``logging.Logger``).
    ``on_batch(batches)`` receives every batch whose records all have their reports (each batch's
    ``reports`` attribute set to its ``Reports``, built with ``delivered``), and ``on_failure(batch, index,
    code, partition, size)`` each failed record's (before ``on_batch``).
    """

    cdef rd_kafka_t *_rk
    cdef State _state
    cdef dict _topics
    cdef object _on_batch
    cdef object _on_failure
    cdef object _delivered
    cdef object _error_cb
    cdef object _stats_cb
    cdef readonly object _logger

    def __cinit__(self):
        self._rk = NULL
        self._state.owner = <PyObject *>self
        self._state.done = NULL
        self._topics = {}

    def __init__(self, dict conf, int wakeup_fd, on_batch, on_failure, delivered):
        cdef char errstr[512]
        cdef rd_kafka_conf_t *c = rd_kafka_conf_new()
        cdef rd_kafka_queue_t *main_queue
        self._on_batch = on_batch
        self._on_failure = on_failure
        self._delivered = delivered
        self._error_cb = conf.get("error_cb")
        self._stats_cb = conf.get("stats_cb")
        self._logger = conf.get("logger")
        try:
            for name, value in conf.items():
                if name in ("error_cb", "stats_cb", "logger"):
                    continue
                key = str(name).encode()
                text = _text(value).encode()
                if rd_kafka_conf_set(c, key, text, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK:
                    raise ValueError(errstr.decode("utf-8", "replace"))
            if self._logger is not None:
                if rd_kafka_conf_set(c, b"log.queue", b"true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK:
                    raise ValueError(errstr.decode("utf-8", "replace"))
                rd_kafka_conf_set_log_cb(c, _on_log)
            if self._stats_cb is not None:
                rd_kafka_conf_set_stats_cb(c, _on_stats)
        except BaseException:
            rd_kafka_conf_destroy(c)
            raise
        rd_kafka_conf_set_dr_msg_cb(c, _on_delivery)
        rd_kafka_conf_set_error_cb(c, _on_error)
        rd_kafka_conf_set_opaque(c, &self._state)
        self._rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr))
        if self._rk == NULL:  # the configuration is still ours to free
            rd_kafka_conf_destroy(c)
            raise ValueError(errstr.decode("utf-8", "replace"))
        main_queue = rd_kafka_queue_get_main(self._rk)
        if self._logger is not None:
            rd_kafka_set_log_queue(self._rk, main_queue)
        rd_kafka_queue_io_event_enable(main_queue, wakeup_fd, b"1", 1)
        rd_kafka_queue_destroy(main_queue)

    def _error(self, code, name, text, fatal):
        if self._error_cb is not None:
            self._error_cb(code, name, text, fatal)

    def _stats(self, text):
        if self._stats_cb is not None:
            self._stats_cb(text)

    cdef rd_kafka_topic_t *_topic(self, str name) except NULL:
        handle = self._topics.get(name)
        if handle is not None:
            return <rd_kafka_topic_t *><size_t>handle
        cdef rd_kafka_topic_t *rkt = rd_kafka_topic_new(self._rk, name.encode(), NULL)
        if rkt == NULL:
            raise ValueError(f"librdkafka refused topic name {name!r}")
        self._topics[name] = <size_t>rkt
        return rkt

    def produce(self, str topic, batch, list results, records):
        """Hand librdkafka every record whose ``results`` slot is ``None``.

        ``records[i]`` is ``(value, key, headers, partition, timestamp, size)`` (``gateway.kafka.delivery.
        Prepared``; key and value ``bytes``, ``str`` (its UTF-8), another buffer such as ``msgspec.Raw``, or
        ``None``). Returns ``(records produced, their bytes, [(index, librdkafka error code)])`` for those
        refused at once (a full queue, an unknown partition). ``batch`` is handed to ``on_batch`` once every
        produced record has its report; nothing is if none was produced.
        """
        if self._rk == NULL:
            raise RuntimeError("producer is closed")
        cdef rd_kafka_topic_t *rkt = self._topic(topic)
        cdef Py_ssize_t n = len(results), i, count = 0
        cdef int64_t total = 0
        cdef Pending *pending = <Pending *>malloc(sizeof(Pending))
        if pending == NULL:
            raise MemoryError()
        pending.slots = <Slot *>malloc(max(n, 1) * sizeof(Slot))
        if pending.slots == NULL:
            free(pending)
            raise MemoryError()
        cdef Slot *slot
        cdef const char *value_ptr
        cdef const char *key_ptr
        cdef const char *name_ptr
        cdef Py_ssize_t value_len, key_len, name_len
        cdef rd_kafka_headers_t *headers = NULL
        cdef rd_kafka_resp_err_t err
        cdef bytes data
        cdef Py_buffer value_view, key_view
        cdef bint value_held = False, key_held = False
        refused = []
        try:
            for i in range(n):
                if results[i] is not None:
                    continue
                value, key, header_list, partition, timestamp, size = records[i]
                value_ptr = _payload(value, &value_len, &value_view, &value_held)
                key_ptr = _payload(key, &key_len, &key_view, &key_held)
                headers = NULL
                if header_list:
                    headers = rd_kafka_headers_new(len(header_list))
                    for header_name, header_value in header_list:
                        name_ptr = PyUnicode_AsUTF8AndSize(header_name, &name_len)
                        data = header_value
                        rd_kafka_header_add(headers, name_ptr, name_len, <const char *>data, len(data))
                slot = &pending.slots[count]
                slot.pending = pending
                slot.index = i
                slot.size = size
                err = gw_produce(self._rk, rkt, partition, value_ptr, value_len, key_ptr, key_len, timestamp,
                                 headers, slot)
                # librdkafka copied key and value (RD_KAFKA_MSG_F_COPY): views of the request body can go.
                if value_held:
                    value_held = False
                    PyBuffer_Release(&value_view)
                if key_held:
                    key_held = False
                    PyBuffer_Release(&key_view)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR:
                    if headers != NULL:  # still ours when librdkafka refused the record
                        rd_kafka_headers_destroy(headers)
                        headers = NULL
                    refused.append((i, <int>err))
                    continue
                headers = NULL  # librdkafka's now
                count += 1
                total += size
        finally:
            if value_held:  # an exception came between taking a view and handing it over
                PyBuffer_Release(&value_view)
            if key_held:
                PyBuffer_Release(&key_view)
            if headers != NULL:  # built, but an exception came before the record was handed over
                rd_kafka_headers_destroy(headers)
            # Records already handed over will be reported whatever happened to the rest.
            if count == 0:
                free(pending.slots)
                free(pending)
            else:
                pending.count = count
                pending.remaining = count
                pending.batch = <PyObject *>batch
                Py_INCREF(batch)
        return count, total, refused

    def serve(self):
        """Serve librdkafka's queued events on this thread; finished batches go to ``on_batch``."""
        if self._rk == NULL:
            return
        rd_kafka_poll(self._rk, 0)
        self._finish()

    cdef _finish(self):
        cdef Pending *pending = self._state.done
        cdef Pending *ordered = NULL
        cdef Pending *nxt
        cdef Slot *slot
        cdef Py_ssize_t i
        cdef Reports reports
        if pending == NULL:
            return
        self._state.done = NULL
        while pending != NULL:  # reported newest first: reverse into the order they finished
            nxt = pending.next
            pending.next = ordered
            ordered = pending
            pending = nxt
        on_failure = self._on_failure
        finished = []
        while ordered != NULL:
            batch = <object>ordered.batch
            Py_DECREF(batch)  # ``batch`` (a new reference above) keeps it alive
            # The slots become the batch's Reports: successes stay C data until someone asks.
            reports = Reports.__new__(Reports)
            reports._slots = ordered.slots
            reports._count = ordered.count
            reports._delivered = self._delivered
            batch.reports = reports
            for i in range(ordered.count):
                slot = &ordered.slots[i]
                if slot.err != 0:
                    on_failure(batch, slot.index, slot.err, slot.partition, slot.size)
            finished.append(batch)
            nxt = ordered.next
            free(ordered)
            ordered = nxt
        self._on_batch(finished)

    def queue_length(self):
        """Records librdkafka holds: queued, in flight, or reported but not yet served."""
        return rd_kafka_outq_len(self._rk) if self._rk != NULL else 0

    def purge(self):
        """Give up on every record not yet acknowledged; their reports (errors) come with the next ``serve()``."""
        if self._rk != NULL:
            rd_kafka_purge(self._rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)

    def destroy(self):
        """Stop librdkafka's threads and free the producer (blocks briefly; safe off the event loop)."""
        cdef rd_kafka_t *rk = self._rk
        if rk == NULL:
            return
        self._rk = NULL
        for handle in self._topics.values():
            rd_kafka_topic_destroy(<rd_kafka_topic_t *><size_t>handle)
        self._topics.clear()
        with nogil:
            rd_kafka_destroy(rk)

    def __dealloc__(self):
        # Never closed (``destroy()``): free librdkafka without the GIL (its threads may be waiting for it
        # to call a handler) and with the handlers told that their owner is gone.
        cdef rd_kafka_t *rk = self._rk
        if rk == NULL:
            return
        self._rk = NULL
        self._state.owner = NULL
        if self._topics:
            for handle in self._topics.values():
                rd_kafka_topic_destroy(<rd_kafka_topic_t *><size_t>handle)
        with nogil:
            rd_kafka_destroy(rk)

