"""Nothing acked is lost: broker failures, broker restarts and gateway restarts under load (issue 10).

Each test drives a real gateway process with a bounded produce load, injects the fault, and then reads
the topic back with confluent-kafka directly. Every record the gateway answered 200 for must be in
Kafka exactly once; records that got an error may be absent (or present once, when only the ack was
lost). Each test prints its figures so they can be quoted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from httpx_sse import connect_sse

from localkafka import KafkaCluster
from tests.helpers import GatewayProcess, read_all, record_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CLIENTS = 8


@dataclass
class LoadReport:
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    missing_retry_after: int = 0
    transport_errors: int = 0

    def summary(self, found: Counter[int]) -> str:
        dup = sum(1 for i in self.acked if found[i] > 1)
        lost = sum(1 for i in self.acked if found[i] == 0)
        return (
            f"sent={self.sent} acked={len(self.acked)} found={sum(found.values())} "
            f"acked_lost={lost} acked_duplicates={dup} statuses={dict(self.statuses)} "
            f"transport_errors={self.transport_errors}"
        )


async def produce_load(url: str, topic: str, seconds: float, report: LoadReport, stop: threading.Event) -> None:
    """CLIENTS concurrent loops POSTing single records with unique ids until time or ``stop``."""
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    async def worker(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline and not stop.is_set():
            i = next(counter)
            report.sent += 1
            try:
                r = await http.post(f"/topics/{topic}/records", json={"key": str(i), "value": {"id": i}})
            except httpx.HTTPError:
                report.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            report.statuses[r.status_code] += 1
            if r.status_code == 200:
                report.acked.add(i)
            else:
                assert r.status_code in (429, 503), r.text
                body = r.json()
                assert set(body) == {"error_code", "message"}
                if "retry-after" not in r.headers:
                    report.missing_retry_after += 1
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(CLIENTS)))


def ids_in(bootstrap: str, topic: str, expected: int, partitions: int) -> Counter[int]:
    return Counter(json.loads(m.value())["id"] for m in read_all(bootstrap, topic, expected, partitions, timeout_s=60))


def make_topic(bootstrap: str, partitions: int, rf: int, min_isr: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"faults-{int(time.time() * 1000)}"
    conf = {"min.insync.replicas": str(min_isr)}
    admin.create_topics([NewTopic(name, partitions, rf, config=conf)])[name].result(timeout=30)
    time.sleep(1.0)
    return name


def run_with_fault(url: str, topic: str, seconds: float, fault: Callable[[], None], fault_after_s: float) -> LoadReport:
    report = LoadReport()
    stop = threading.Event()

    failures: list[BaseException] = []

    def inject() -> None:
        time.sleep(fault_after_s)
        try:
            fault()
        except BaseException as exc:  # surfaced in the test's own thread below
            failures.append(exc)

    t = threading.Thread(target=inject)
    t.start()
    asyncio.run(produce_load(url, topic, seconds, report, stop))
    t.join()
    if failures:
        raise failures[0]
    return report


def assert_exactly_once(report: LoadReport, found: Counter[int]) -> None:
    print("\n" + report.summary(found))
    assert report.acked, "no record was acknowledged at all"
    lost = [i for i in report.acked if found[i] == 0]
    dups = [i for i in report.acked if found[i] > 1]
    assert not lost, f"{len(lost)} acked records lost, e.g. {lost[:5]}"
    assert not dups, f"{len(dups)} acked records duplicated, e.g. {dups[:5]}"
    assert all(n == 1 for n in found.values()), "some record is in Kafka twice"
    assert report.missing_retry_after == 0


class SseReader(threading.Thread):
    """Reads a topic's SSE stream in the background, collecting the ``id`` of every record's value."""

    def __init__(self, url: str, topic: str, params: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.topic, self.params = url, topic, params
        self.ids: Counter[int] = Counter()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=60)) as http,
                connect_sse(http, "GET", f"/topics/{self.topic}/events", params=self.params) as source,
            ):
                for event in record_events(source):
                    assert event.event == "record", event
                    self.ids[json.loads(event.data)["value"]["id"]] += 1
                    if self.stop.is_set():
                        return
        except BaseException as exc:
            self.error = exc

    def wait_for(self, wanted: set[int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= set(self.ids) and self.error is None:
            time.sleep(0.2)
        self.stop.set()


def test_kill_one_of_three_brokers_under_produce_loses_nothing_acked() -> None:
    with KafkaCluster(nodes=3) as cluster:
        topic = make_topic(cluster.bootstrap_servers, partitions=3, rf=3, min_isr=2)
        env = {"GATEWAY_METADATA_REFRESH_S": "1"}
        with GatewayProcess(cluster.bootstrap_servers, env=env) as gw:
            # Subscribers that must carry on while partition leadership moves to the survivors.
            readers = [
                SseReader(gw.url, topic, {"from": "earliest"}),
                SseReader(gw.url, topic, {"from": "earliest", "group": f"g-{topic}"}),
            ]
            for reader in readers:
                reader.start()
            report = run_with_fault(gw.url, topic, 14.0, lambda: cluster.stop_node(0, kill=True), 4.0)
            assert httpx.get(gw.url + "/healthz").status_code == 200
            for reader in readers:
                reader.wait_for(report.acked, 60.0)
        found = ids_in(cluster.bootstrap_servers, topic, len(report.acked), 3)
        assert_exactly_once(report, found)
        for reader, mode in zip(readers, ("assign", "group"), strict=True):
            missing = report.acked - set(reader.ids)
            print(
                f"SSE {mode}: received={sum(reader.ids.values())} distinct={len(reader.ids)} missing_acked={len(missing)}"
            )
            assert reader.error is None, f"{mode} stream failed: {reader.error!r}"
            assert not missing, f"{mode} stream missed {len(missing)} acked records, e.g. {sorted(missing)[:5]}"
        # A stream without a group never repeats; a group stream is at-least-once but was never rebalanced.
        assert all(n == 1 for n in readers[0].ids.values())


def test_single_broker_restart_under_load_recovers_without_loss() -> None:
    with KafkaCluster(nodes=1) as cluster:
        topic = make_topic(cluster.bootstrap_servers, partitions=2, rf=1, min_isr=1)
        env = {"GATEWAY_METADATA_REFRESH_S": "0.5", "GATEWAY_PRODUCE__DELIVERY_TIMEOUT_MS": "5000"}
        with GatewayProcess(cluster.bootstrap_servers, env=env) as gw:
            readiness: list[int] = []

            def outage() -> None:
                cluster.stop_node(0)
                for _ in range(40):  # watch /readyz while the broker is away
                    readiness.append(httpx.get(gw.url + "/readyz", timeout=10).status_code)
                    if readiness[-1] == 503:
                        break
                    time.sleep(0.25)
                time.sleep(3.0)
                cluster.start_node(0)

            report = run_with_fault(gw.url, topic, 30.0, outage, 3.0)
            assert 503 in readiness, f"/readyz never turned 503 during the outage: {readiness}"
            # Recovery: after the outage the gateway answers 200 again by itself (the producer may
            # first need a new idempotence epoch from the restarted broker).
            recovered = None
            for attempt in range(30):
                r = httpx.post(
                    gw.url + f"/topics/{topic}/records",
                    json={"key": "after", "value": {"id": -1 - attempt}},
                    timeout=30,
                )
                if r.status_code == 200:
                    recovered = -1 - attempt
                    break
                assert r.status_code == 503 and "retry-after" in r.headers, r.text
                time.sleep(1)
            assert recovered is not None, "the gateway did not recover within 30 attempts"
            report.acked.add(recovered)
            assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 200
        found = ids_in(cluster.bootstrap_servers, topic, len(report.acked), 2)
        assert report.statuses[503] > 0, f"expected 503s during a 5 s+ outage: {report.summary(found)}"
        assert_exactly_once(report, found)


def test_gateway_sigterm_under_load_keeps_every_acked_record(bootstrap: str, admin: AdminClient) -> None:
    topic = f"sigterm-{int(time.time() * 1000)}"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    time.sleep(0.5)
    gw = GatewayProcess(bootstrap, env={"GATEWAY_SHUTDOWN_GRACE_S": "5"}).start()
    spare = GatewayProcess(bootstrap).start()
    # An SSE client on the gateway that is about to be stopped; it resumes on the spare by cursor.
    first = CursorReader(gw.url, topic)
    first.start()
    exit_code: list[int] = []

    def terminate() -> None:
        exit_code.append(gw.stop(signal.SIGTERM, timeout_s=30))

    try:
        report = run_with_fault(gw.url, topic, 6.0, terminate, 3.0)
        first.join(30)
        assert not first.is_alive(), "the stream did not end when its gateway shut down"
        assert first.cursor is not None, "no event reached the first stream before shutdown"
        second = CursorReader(spare.url, topic, first.cursor)
        second.start()
        second.wait_for(report.acked - set(first.ids), 60.0)
    finally:
        spare.stop()
    # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is a clean exit too.
    assert exit_code in ([0], [-signal.SIGTERM]), f"gateway exit code {exit_code}"
    found = ids_in(bootstrap, topic, len(report.acked), 2)
    assert_exactly_once(report, found)
    both = first.ids + second.ids
    print(
        f"SSE across SIGTERM: first={sum(first.ids.values())} resumed={sum(second.ids.values())} "
        f"goodbye={first.goodbye} repeated={sum(n - 1 for n in both.values() if n > 1)}"
    )
    assert first.goodbye, "the stream did not get the shutdown retry before closing"
    assert not report.acked - set(both), "records acked during the restart are missing from the resumed stream"
    assert all(n == 1 for n in both.values()), "the resumed stream repeated records"


class CursorReader(SseReader):
    """An SSE reader that keeps the last event's cursor and notices the gateway's goodbye."""

    def __init__(self, url: str, topic: str, cursor: str | None = None) -> None:
        super().__init__(url, topic, {"from": "earliest"})
        self.cursor = cursor
        self.goodbye = False

    def run(self) -> None:
        headers = {"Last-Event-ID": self.cursor} if self.cursor else {}
        try:
            with (
                httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=60)) as http,
                http.stream("GET", f"/topics/{self.topic}/events", params=self.params, headers=headers) as response,
            ):
                assert response.status_code == 200, response.status_code
                event_id = None
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: ") and event_id is not None:
                        self.ids[json.loads(line[6:])["value"]["id"]] += 1
                        self.cursor, event_id = event_id, None
                    elif "shutting down" in line:
                        self.goodbye = True
                    if self.stop.is_set():
                        return
        except httpx.HTTPError:
            pass  # the connection ends when the gateway goes away
        except BaseException as exc:
            self.error = exc
