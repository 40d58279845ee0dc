"""The benchmark scenarios. Each starts what it needs (a fresh gateway, so CPU and RSS are its own),
measures the gateway and its reference in the same run, and adds rows to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from confluent_kafka.admin import AdminClient

from bench import clients, native, procs, profile, wrk
from bench.report import Report

HERE = Path(__file__).resolve().parent
PROFILE_DIR = HERE / "profiles"


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``QUICK`` is a smoke run of about two minutes in all."""

    http_s: float = 10.0
    warmup_s: float = 2.0
    batch_s: float = 15.0
    ndjson_lines: int = 100_000
    ndjson_streams: int = 4
    sse_records: int = 200_000
    first_event_tries: int = 20
    fanout_subscribers: int = 1000
    fanout_rate: float = 50.0
    fanout_s: float = 20.0
    idle_subscribers: int = 10_000
    soak_s: float = 300.0
    soak_rate: float = 200.0
    ramp_deadline_s: float = 180.0


FULL = Sizes()
QUICK = Sizes(
    http_s=3.0,
    warmup_s=1.0,
    batch_s=4.0,
    ndjson_lines=20_000,
    sse_records=50_000,
    first_event_tries=5,
    fanout_subscribers=100,
    fanout_s=5.0,
    idle_subscribers=500,
    soak_s=20.0,
    ramp_deadline_s=40.0,
)
# Stop adding subscribers before the machine (shared with the broker) runs out of memory.
GATEWAY_RSS_CAP_MB = 4096.0
# Work per unit, robust to a busy machine (the clock rates are not): lower is better, ratio = cost factor.
CPU_PER_RECORD = "CPU µs/record (lower is better)"
CPU_PER_REQUEST = "CPU µs/request (lower is better)"
MIN_MEM_AVAILABLE_MB = 3072.0


@dataclass
class Bench:
    bootstrap: str
    broker_pid: int | None
    sizes: Sizes
    report: Report
    profile: bool = False
    topic_name: str = ""
    # Raw py-spy stacks of this run (its own directory: runs of other engineers may profile at the same time).
    profile_dir: Path = PROFILE_DIR
    admin: AdminClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def topic(self, partitions: int = 3) -> str:
        return native.create_topic(self.admin, partitions)

    def meter(self, server: procs.Server | None) -> procs.Meter:
        return procs.Meter(server.pid if server else None, self.broker_pid)


def _record(i: int) -> tuple[bytes, bytes]:
    key = f"user-{i % 100}"
    value = {"user": key, "action": "click", "n": i, "page": "/products/42"}
    return key.encode(), msgspec.json.encode(value)


def _record_json(i: int) -> bytes:
    key, value = _record(i)
    return b'{"key":"' + key + b'","value":' + value + b"}"


SINGLE_BODY = _record_json(1)
BATCH_BODY = b'{"records":[' + b",".join(_record_json(i) for i in range(100)) + b"]}"
BATCH_PAIRS = [_record(i) for i in range(100)]


@contextlib.contextmanager
def _profiled(bench: Bench, server: procs.Server, name: str, duration_s: float | None) -> Iterator[Path | None]:
    """py-spy on the server for the block (``--profile``); without a duration it is stopped at the end."""
    if not bench.profile or not profile.available():
        yield None
        return
    out = bench.profile_dir / f"{name}.txt"
    proc = profile.start(server.pid, out, duration_s)
    try:
        yield out
    finally:
        if duration_s is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait((duration_s or 0) + 30)
        except Exception:
            proc.kill()
        if proc.returncode:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            print(f"bench: py-spy failed ({proc.returncode}): {err.strip()[:300]}")


def _add_profile(bench: Bench, title: str, path: Path | None, cpu_s: float, records: int) -> None:
    if path is None or not path.exists():
        return
    summary = profile.summarise(path)
    per_record = cpu_s / records * 1e6 if records else None
    bench.report.profiles.append((title, summary.lines(per_record)))


def _wrk(bench: Bench, server: procs.Server, body: bytes, connections: int, seconds: float, label: str,
         profile_name: str | None = None, records_per_request: int = 1) -> wrk.WrkResult:  # fmt: skip
    url = server.url + f"/topics/{bench.topic_name}/records"
    wrk.run(url, body, connections=connections, duration_s=bench.sizes.warmup_s)
    with contextlib.ExitStack() as stack:
        prof = stack.enter_context(_profiled(bench, server, profile_name, seconds)) if profile_name else None
        with bench.meter(server) as m:
            res = wrk.run(url, body, connections=connections, duration_s=seconds)
            m.add_load(res.cpu_s)
    bench.report.usage(label, m.usage, "wrk")
    res.server_cpu_s = m.usage.gateway_cpu_s
    if not res.ok:
        bench.report.note(f"{label}: no request succeeded ({res.requests} answered, {res.errors} errors)")
    elif res.errors:
        bench.report.note(f"{label}: {res.errors} of {res.requests} requests failed")
    if profile_name:
        _add_profile(bench, label, prof, m.usage.gateway_cpu_s, res.ok * records_per_request)
    return res


# -- 1 ------------------------------------------------------------------------------------------


def single(bench: Bench) -> None:
    """Single-record produce, 1 and 64 clients, against the trivial FastAPI endpoint as the ceiling."""
    s = bench.sizes
    bench.topic_name = bench.topic()
    with procs.trivial() as tv:
        t1 = _wrk(bench, tv, SINGLE_BODY, 1, s.http_s, "1 single, trivial, 1 client")
        t64 = _wrk(bench, tv, SINGLE_BODY, 64, s.http_s, "1 single, trivial, 64 clients")
    with procs.gateway(bench.bootstrap) as gw:
        g1 = _wrk(bench, gw, SINGLE_BODY, 1, s.http_s, "1 single, gateway, 1 client", "single-1")
        g64 = _wrk(bench, gw, SINGLE_BODY, 64, s.http_s, "1 single, gateway, 64 clients", "single-64")
    with bench.meter(None) as m:
        floor = native.sequential_latencies(bench.bootstrap, bench.topic_name, *_record(1), s.http_s / 2)
    bench.report.usage("1 single, native producer, 1 at a time", m.usage, "python (native)")
    r = bench.report
    r.row("1 single produce, 1 client", "requests/s", g1.rps, t1.rps, "trivial")
    r.row("1 single produce, 1 client", "p50 ms", g1.p50_ms, t1.p50_ms, "trivial", target=("<=", 2.0), ratio=False)
    r.row("1 single produce, 1 client", "p99 ms", g1.p99_ms, t1.p99_ms, "trivial", target=("<=", 10.0), ratio=False)
    r.row("1 single produce, 1 client", "p50 ms", g1.p50_ms, _pct(floor, 50), "native produce→ack", ratio=False)
    r.row("1 single produce, 1 client", "p99 ms", g1.p99_ms, _pct(floor, 99), "native produce→ack", ratio=False)
    r.row("1 single produce, 64 clients", "requests/s", g64.rps, t64.rps, "trivial", target=(">=ratio", 0.7))
    r.row("1 single produce, 64 clients", "p50 ms", g64.p50_ms, t64.p50_ms, "trivial", ratio=False)
    r.row("1 single produce, 64 clients", "p99 ms", g64.p99_ms, t64.p99_ms, "trivial", ratio=False)
    r.row("1 single produce, 64 clients", CPU_PER_REQUEST, g64.server_cpu_us(), t64.server_cpu_us(), "trivial")


# -- 2 ------------------------------------------------------------------------------------------


def batch(bench: Bench) -> None:
    """100 records per request, 8 clients, against the native Producer producing as many records."""
    s = bench.sizes
    bench.topic_name = bench.topic()
    with procs.gateway(bench.bootstrap) as gw:
        g = _wrk(bench, gw, BATCH_BODY, 8, s.batch_s, "2 batch, gateway, 8 clients", "batch-100x8", 100)
    records = g.ok * 100
    count = max(records, 50_000)
    with bench.meter(None) as m:
        n = native.produce(bench.bootstrap, bench.topic(), BATCH_PAIRS, count)
    bench.report.usage("2 batch, native producer", m.usage, "python (native)")
    with bench.meter(None) as m:
        shaped = native.produce_awaited_batches(bench.bootstrap, bench.topic(), BATCH_PAIRS, 8, s.batch_s)
    bench.report.usage("2 batch, native, 8 threads x 100 awaited", m.usage, "python (native)")
    row = "2 batch produce, 100/request, 8 clients"
    bench.report.row(row, "records/s", records / g.duration_s, n.rate, "native", target=(">=ratio", 0.5))
    bench.report.row(row, CPU_PER_RECORD, g.server_cpu_us(100), n.cpu_us, "native")
    # Not the target's reference: the same load shape without HTTP (8 threads, 100 records each, awaited).
    bench.report.row(row, "records/s", records / g.duration_s, shaped.rate, "native, 8 threads x 100 awaited")
    bench.report.row(row, CPU_PER_RECORD, g.server_cpu_us(100), shaped.cpu_us, "native, 8 threads x 100 awaited")
    bench.report.row(row, "p99 ms/request", g.p99_ms, None, "", ratio=False)


# -- 3 ------------------------------------------------------------------------------------------


def ndjson(bench: Bench) -> None:
    """Streaming produce: N NDJSON lines over a few concurrent requests, against the native Producer."""
    s = bench.sizes
    per = s.ndjson_lines // s.ndjson_streams
    topic = bench.topic()
    bodies = [b"".join(_record_json(j * per + i) + b"\n" for i in range(per)) for j in range(s.ndjson_streams)]
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/records"
        asyncio.run(clients.post_ndjson(url, b"".join(_record_json(i) + b"\n" for i in range(1000))))  # warm-up

        async def all_streams() -> list[tuple[int, int]]:
            return await asyncio.gather(*(clients.post_ndjson(url, b) for b in bodies))

        with _profiled(bench, gw, "ndjson", None) as prof, bench.meter(gw) as m:
            results = asyncio.run(all_streams())
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    bench.report.usage("3 ndjson, gateway", m.usage, "python asyncio")
    _add_profile(bench, "3 ndjson, gateway", prof, m.usage.gateway_cpu_s, ok)
    if bad or ok != per * s.ndjson_streams:
        bench.report.note(f"3 ndjson: {ok} ok and {bad} error lines of {per * s.ndjson_streams}")
    with bench.meter(None) as mn:
        n = native.produce(bench.bootstrap, bench.topic(), [_record(i) for i in range(100)], per * s.ndjson_streams)
    bench.report.usage("3 ndjson, native producer", mn.usage, "python (native)")
    name = f"3 NDJSON produce, {s.ndjson_streams} streams x {per}"
    bench.report.row(name, "records/s", ok / m.usage.wall_s, n.rate, "native")
    bench.report.row(name, CPU_PER_RECORD, m.usage.gateway_cpu_s / max(ok, 1) * 1e6, n.cpu_us, "native")


# -- 4 and 5 ------------------------------------------------------------------------------------


def _fill(bench: Bench, records: int, partitions: int = 3) -> str:
    topic = bench.topic(partitions)
    n = native.produce(bench.bootstrap, topic, [_record(i) for i in range(1000)], records)
    if n.records != records:
        raise RuntimeError(f"pre-producing {records} records wrote only {n.records}")
    return topic


def sse(bench: Bench) -> None:
    """One SSE subscriber from earliest over N records, against the native Consumer reading them."""
    s = bench.sizes
    topic = _fill(bench, s.sse_records)
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/events?from=earliest"
        asyncio.run(clients.read_sse(url, min(1000, s.sse_records), 30))  # warm-up
        with _profiled(bench, gw, "sse", None) as prof, bench.meter(gw) as m:
            g = asyncio.run(clients.read_sse(url, s.sse_records, 300))
    bench.report.usage("4 sse, gateway", m.usage, "python httpx")
    _add_profile(bench, "4 sse, gateway", prof, m.usage.gateway_cpu_s, g.records)
    if g.records < s.sse_records:
        bench.report.note(f"4 sse: the stream delivered {g.records} of {s.sse_records} records before the timeout")
    with bench.meter(None) as mn:
        n = native.consume(bench.bootstrap, topic, 3, s.sse_records)
    bench.report.usage("4 sse, native consumer", mn.usage, "python (native)")
    with bench.meter(None) as mc:
        nc = native.consume(bench.bootstrap, topic, 3, s.sse_records, connected=True)
    bench.report.usage("4 sse, native consumer, connected first", mc.usage, "python (native)")
    row = f"4 SSE 1 subscriber from earliest, {s.sse_records} records"
    gateway_cpu = m.usage.gateway_cpu_s / max(g.records, 1) * 1e6
    # The target's row compares end to end: a new reader, its start-up included (the gateway's consumer
    # is pooled, a new native one connects first). The second compares with a consumer already connected.
    bench.report.row(row, "records/s", g.rate, n.rate, "native, new consumer", target=(">=ratio", 0.8))
    bench.report.row(row, CPU_PER_RECORD, gateway_cpu, n.cpu_us, "native, new consumer")
    bench.report.row(row, "records/s", g.rate, nc.rate, "native, connected consumer")
    bench.report.row(row, CPU_PER_RECORD, gateway_cpu, nc.cpu_us, "native, connected consumer")


def first_event(bench: Bench) -> None:
    """Connect -> first record event on an already-populated topic, p50 over several tries."""
    s = bench.sizes
    topic = _fill(bench, 10_000)
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/events?from=earliest"
        asyncio.run(clients.first_event(url))  # warm-up
        with bench.meter(gw) as m:
            times = [asyncio.run(clients.first_event(url)) * 1000 for _ in range(s.first_event_tries)]
    bench.report.usage("5 first event, gateway", m.usage, "python httpx")
    name = f"5 time to first SSE event ({s.first_event_tries} tries)"
    bench.report.row(name, "p50 ms", statistics.median(times), None, "", target=("<=", 50.0), ratio=False)
    bench.report.row(name, "max ms", max(times), None, "", ratio=False)


# -- 6 ------------------------------------------------------------------------------------------


def _guard(server: procs.Server) -> Callable[[], str]:
    def check() -> str:
        rss = procs.rss_mb(server.pid)
        if rss > GATEWAY_RSS_CAP_MB:
            return f"gateway RSS {rss:.0f} MB over the bench's cap of {GATEWAY_RSS_CAP_MB:.0f} MB"
        avail = procs.mem_available_mb()
        if avail < MIN_MEM_AVAILABLE_MB:
            return f"machine's available memory down to {avail:.0f} MB"
        return ""

    return check


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def fanout(bench: Bench) -> None:
    """N subscribers at latest, one producer at a steady rate: produce -> receive latency."""
    s = bench.sizes
    topic = bench.topic()
    producer = native.producer(bench.bootstrap)
    producer.list_topics(topic, timeout=10)
    pad = "x" * 64
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/events?from=latest"

        async def run() -> tuple[clients.Crowd, list[float], int, float, procs.Meter]:
            latencies: list[float] = []
            crowd = clients.Crowd()
            t0 = time.monotonic()
            await crowd.grow(url, s.fanout_subscribers, latencies, guard=_guard(gw), deadline_s=s.ramp_deadline_s)
            ramp_s = time.monotonic() - t0
            await asyncio.sleep(1.0)
            produced = 0
            with bench.meter(gw) as m:
                start = time.monotonic()
                while (now := time.monotonic()) - start < s.fanout_s:
                    due = start + produced / s.fanout_rate
                    if due > now:
                        await asyncio.sleep(due - now)
                    value = b'{"ts":%d,"pad":"%s"}' % (time.time_ns() // 1000, pad.encode())
                    producer.produce(topic, value, b"k%d" % produced)
                    producer.poll(0)
                    produced += 1
                producer.flush(10)
                await asyncio.sleep(3.0)  # let the last events arrive
            await crowd.close()
            return crowd, latencies, produced, ramp_s, m

        crowd, latencies, produced, ramp_s, m = asyncio.run(run())
    subs = len(crowd.subscribers)
    bench.report.usage(f"6 fan-out, gateway, {subs} subscribers", m.usage, "python asyncio + producer")
    if crowd.stopped_because:
        bench.report.note(
            f"6 fan-out: stopped at {subs} of {s.fanout_subscribers} subscribers: {crowd.stopped_because}"
        )
    expected = subs * produced
    received = sum(x.records for x in crowd.subscribers)
    name = f"6 fan-out, {subs} subscribers x {s.fanout_rate:.0f} events/s, {s.fanout_s:.0f} s"
    bench.report.row(name, "subscribers connected", subs, s.fanout_subscribers, "wanted", ratio=False)
    bench.report.row(name, "ramp s", ramp_s, None, "", ratio=False)
    bench.report.row(name, "p50 ms", _pct(latencies, 50), None, "", ratio=False)
    bench.report.row(name, "p99 ms", _pct(latencies, 99), None, "", target=("<=", 250.0), ratio=False)
    bench.report.row(name, "events delivered %", 100 * received / expected if expected else 0.0, None, "", ratio=False)


def idle(bench: Bench) -> None:
    """N mostly idle subscribers: gateway RSS per subscriber."""
    s = bench.sizes
    topic = bench.topic()
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/events?from=latest"

        async def run() -> tuple[clients.Crowd, float, float, float, procs.Meter]:
            warm = clients.Crowd()
            await warm.grow(url, 10, None)  # first-use costs (imports, caches) are not per subscriber
            await warm.close()
            await asyncio.sleep(2.0)
            before = procs.rss_mb(gw.pid)
            crowd = clients.Crowd()
            with bench.meter(gw) as m:
                t0 = time.monotonic()
                await crowd.grow(
                    url, s.idle_subscribers, None, wave=500, guard=_guard(gw), deadline_s=s.ramp_deadline_s
                )
                ramp_s = time.monotonic() - t0
                await asyncio.sleep(3.0)
            after = procs.rss_mb(gw.pid)
            await crowd.close()
            return crowd, before, after, ramp_s, m

        crowd, before, after, ramp_s, m = asyncio.run(run())
    subs = len(crowd.subscribers)
    bench.report.usage(f"6 idle, gateway, {subs} subscribers", m.usage, "python asyncio")
    if crowd.stopped_because:
        bench.report.note(f"6 idle: stopped at {subs} of {s.idle_subscribers} subscribers: {crowd.stopped_because}")
    name = f"6 idle subscribers ({subs} of {s.idle_subscribers})"
    per_kb = (after - before) * 1000 / subs if subs else float("nan")
    bench.report.row(name, "RSS KB/subscriber", per_kb, None, "", target=("<=", 30.0), ratio=False)
    bench.report.row(name, "RSS before / after MB", f"{before:.0f} / {after:.0f}", None, "", ratio=False)
    bench.report.row(name, "ramp s", ramp_s, None, "", ratio=False)


# -- 7 ------------------------------------------------------------------------------------------


def soak(bench: Bench) -> None:
    """A steady produce rate with live and churning subscribers; RSS sampled every second."""
    s = bench.sizes
    topic = bench.topic()
    body = b'{"records":[' + b",".join(_record_json(i) for i in range(10)) + b"]}"
    warm_s = min(30.0, s.soak_s / 4)
    with procs.gateway(bench.bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/records"
        sse_url = gw.url + f"/topics/{topic}/events?from=latest"

        async def run() -> tuple[clients.PacedResult, list[tuple[float, float]], int, int, procs.Meter]:
            samples: list[tuple[float, float]] = []
            crowd = clients.Crowd()
            await crowd.grow(sse_url, 4, None)
            churned = 0
            stop = asyncio.Event()

            async def sample() -> None:
                t0 = time.monotonic()
                while not stop.is_set():
                    samples.append((time.monotonic() - t0, procs.rss_mb(gw.pid)))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)

            async def churn() -> None:
                nonlocal churned
                while not stop.is_set():
                    with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                        sub = await clients.subscribe(sse_url, None)
                        await asyncio.sleep(0.5)
                        sub.close()
                        churned += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.5)

            with bench.meter(gw) as m:
                tasks = [asyncio.create_task(sample()), asyncio.create_task(churn())]
                res = await clients.paced_produce(url, body, s.soak_rate, s.soak_s)
                stop.set()
                await asyncio.gather(*tasks)
            received = sum(x.records for x in crowd.subscribers)
            await crowd.close()
            return res, samples, churned, received, m

        res, samples, churned, received, m = asyncio.run(run())
    bench.report.usage("7 soak, gateway", m.usage, "python asyncio (raw HTTP/1.1)")
    steady = [rss for t, rss in samples if t >= warm_s]
    window = max(1, len(steady) // 10)
    base = statistics.median(steady[:window]) if steady else float("nan")
    end = statistics.median(steady[-window:]) if steady else float("nan")
    name = f"7 soak {s.soak_s:.0f} s, {s.soak_rate:.0f} req/s x 10 records"
    bench.report.row(name, "RSS drift %", 100 * (end - base) / base, None, "", target=("<", 10.0), ratio=False)
    bench.report.row(name, "RSS after warm-up / end / max MB",
                     f"{base:.0f} / {end:.0f} / {max(r for _, r in samples):.0f}", None, "", ratio=False)  # fmt: skip
    bench.report.row(name, "requests ok / failed / late", f"{res.ok} / {res.errors} / {res.late}", None, "",
                     ratio=False)  # fmt: skip
    bench.report.row(name, "request p50 / p99 ms",
                     f"{_pct(res.latencies_ms, 50):.1f} / {_pct(res.latencies_ms, 99):.1f}", None, "",
                     ratio=False)  # fmt: skip
    bench.report.row(name, "SSE: 4 live subscribers' events / streams churned", f"{received} / {churned}", None, "",
                     ratio=False)  # fmt: skip


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "single": single,
    "batch": batch,
    "ndjson": ndjson,
    "sse": sse,
    "first-event": first_event,
    "fanout": fanout,
    "idle": idle,
    "soak": soak,
}
