"""Per-principal quotas: records/s and bytes/s produced, and concurrent streams (API.md §6).

Rates are token buckets holding ``burst_s`` seconds of rate. A request is admitted when the buckets
hold what it needs (or are full: a batch larger than the burst is not refused forever, it goes into
debt and the principal waits it off); otherwise it gets 429 42901 with ``Retry-After`` set to when
it would fit. Every produce path reaches Kafka through ``Publisher.submit``, so ``MeteredPublisher``
charges there, exactly by record count and record bytes, whatever the route (native, NDJSON,
Confluent v2/v3). The security middleware says who is producing through ``current_meter``, a
context variable, so the publisher needs no HTTP knowledge.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway._records import total_size
from gateway.kafka.delivery import Batch, Prepared
from gateway.kafka.metadata import TopicInfo
from gateway.metrics import Metrics
from gateway.publish import Publisher
from gateway.settings import QuotaSettings

MAX_PRINCIPAL_LABELS = 200
OTHER_PRINCIPALS = "_other"


@dataclass(frozen=True, slots=True)
class Limits:
    records_per_s: float | None = None
    bytes_per_s: float | None = None
    max_streams: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.records_per_s is None and self.bytes_per_s is None and self.max_streams is None

    def over(self, defaults: Limits) -> Limits:
        """These limits where set, ``defaults`` elsewhere."""
        return Limits(
            self.records_per_s if self.records_per_s is not None else defaults.records_per_s,
            self.bytes_per_s if self.bytes_per_s is not None else defaults.bytes_per_s,
            self.max_streams if self.max_streams is not None else defaults.max_streams,
        )


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.level = self.capacity
        self.stamp = now

    def wait(self, n: float, now: float) -> float:
        """Seconds until ``n`` fits (0: it fits now)."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(n, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


@dataclass
class _Account:
    records: _Bucket | None
    bytes: _Bucket | None
    streams: int = 0


class QuotaBook:
    """Buckets and stream counts per principal; the idlest accounts are forgotten beyond a bound."""

    def __init__(self, settings: QuotaSettings, metrics: Metrics) -> None:
        self.defaults = Limits(settings.records_per_s, settings.bytes_per_s, settings.max_streams)
        self._burst_s = settings.burst_s
        self._max_accounts = settings.max_principals
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._metrics = metrics
        self._labels: set[str] = set()

    def limits_for(self, override: Limits | None) -> Limits:
        return self.defaults if override is None else override.over(self.defaults)

    def _account(self, who: str, limits: Limits, now: float) -> _Account:
        acct = self._accounts.get(who)
        if acct is None:
            acct = _Account(
                _Bucket(limits.records_per_s, self._burst_s, now) if limits.records_per_s else None,
                _Bucket(limits.bytes_per_s, self._burst_s, now) if limits.bytes_per_s else None,
            )
            self._accounts[who] = acct
            if len(self._accounts) > self._max_accounts:
                self._forget_one()
        else:
            self._accounts.move_to_end(who)
        return acct

    def _forget_one(self) -> None:
        # The least recently used account without open streams; its bucket has had the longest to refill.
        for name, acct in self._accounts.items():
            if acct.streams == 0:
                del self._accounts[name]
                return

    def _label(self, who: str) -> str:
        if who in self._labels:
            return who
        if len(self._labels) < MAX_PRINCIPAL_LABELS:
            self._labels.add(who)
            return who
        return OTHER_PRINCIPALS

    def _refuse(self, who: str, kind: str, wait_s: float, message: str) -> errors.Backpressure:
        self._metrics.quota_rejections.labels(self._label(who), kind).inc()
        return errors.Backpressure(message, retry_after_s=max(1, math.ceil(wait_s)))

    def charge(self, who: str, limits: Limits, records: int, nbytes: int) -> None:
        """Take ``records`` and ``nbytes`` from the principal's buckets, or raise ``Backpressure``."""
        if limits.records_per_s is None and limits.bytes_per_s is None:
            return
        now = time.monotonic()
        acct = self._account(who, limits, now)
        rb, bb = acct.records, acct.bytes
        if rb is not None:
            wait = rb.wait(records, now)
            if wait > 0:
                raise self._refuse(who, "records", wait, f"Quota of {rb.rate:g} records/s exceeded; retry later.")
        if bb is not None:
            wait = bb.wait(nbytes, now)
            if wait > 0:
                raise self._refuse(who, "bytes", wait, f"Quota of {bb.rate:g} bytes/s exceeded; retry later.")
        if rb is not None:
            rb.level -= records
        if bb is not None:
            bb.level -= nbytes

    def refund(self, who: str, records: int, nbytes: int) -> None:
        acct = self._accounts.get(who)
        if acct is None:
            return
        if acct.records is not None:
            acct.records.level = min(acct.records.capacity, acct.records.level + records)
        if acct.bytes is not None:
            acct.bytes.level = min(acct.bytes.capacity, acct.bytes.level + nbytes)

    def open_stream(self, who: str, limits: Limits) -> None:
        """Count one more stream for ``who``, or raise ``Backpressure`` at the limit. Pair with ``close_stream``."""
        if limits.max_streams is None:
            return
        acct = self._account(who, limits, time.monotonic())
        if acct.streams >= limits.max_streams:
            raise self._refuse(
                who, "streams", 1, f"Quota of {limits.max_streams} concurrent streams reached; close one first."
            )
        acct.streams += 1

    def close_stream(self, who: str, limits: Limits) -> None:
        if limits.max_streams is None:
            return
        acct = self._accounts.get(who)
        if acct is not None and acct.streams > 0:
            acct.streams -= 1


@dataclass(frozen=True, slots=True)
class Meter:
    """Who is producing in this request, and against which limits."""

    book: QuotaBook
    who: str
    limits: Limits


# Set by the security middleware for the duration of a request whose principal has a rate quota.
current_meter: ContextVar[Meter | None] = ContextVar("gateway_quota_meter", default=None)


class MeteredPublisher(Publisher):
    """``Publisher`` that charges the calling principal's quota before records reach the producer."""

    def submit(self, topic: TopicInfo, records: Sequence[Prepared], *args: Any, **kwargs: Any) -> Batch:
        meter = current_meter.get()
        if meter is None:
            return super().submit(topic, records, *args, **kwargs)
        n, size = len(records), total_size(records)
        meter.book.charge(meter.who, meter.limits, n, size)
        try:
            return super().submit(topic, records, *args, **kwargs)
        except errors.GatewayError:
            # Refused whole (e.g. the producer queue is full): nothing was produced, nothing is owed.
            meter.book.refund(meter.who, n, size)
            raise
