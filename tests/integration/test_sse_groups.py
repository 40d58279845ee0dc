"""``group=<id>``: streams on several gateway processes split the partitions and commit what they wrote."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable

import httpx
from confluent_kafka import ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.helpers import GatewayProcess
from tests.integration.sse_support import Event, metric, produce, stream, take, wait_until


def _members(admin: AdminClient, group: str) -> list[set[int]] | None:
    """Each member's partitions once the group is stable, else None."""
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:  # the coordinator is still being found or loaded
        return None
    if desc.state != ConsumerGroupState.STABLE:
        return None
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in desc.members]


def _committed(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req])[group].result(timeout=10)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


class Reader(threading.Thread):
    """One group stream read on its own thread until told to stop; the gateway's fast heartbeats
    (GATEWAY_SSE__HEARTBEAT_S) wake it, so it notices ``stop`` and disconnects promptly."""

    def __init__(self, url: str, topic: str, group: str) -> None:
        super().__init__(daemon=True)
        self.url, self.topic, self.group = url, topic, group
        self.events: list[Event] = []
        self.stop = threading.Event()

    def run(self) -> None:
        params = {"group": self.group, "from": "earliest"}
        with (
            httpx.Client(base_url=self.url, timeout=10) as http,
            http.stream("GET", f"/topics/{self.topic}/events", params=params) as r,
        ):
            fields: dict[str, str] = {}
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if "data" in fields:
                    self.events.append(Event(fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}


def test_a_group_splits_partitions_across_two_processes_and_resumes_from_commits(
    bootstrap: str, admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    n = 400
    env = {"GATEWAY_SSE__HEARTBEAT_S": "0.2"}
    with GatewayProcess(bootstrap, env=env) as a, GatewayProcess(bootstrap, env=env) as b:
        ra, rb = Reader(a.url, topic, group), Reader(b.url, topic, group)
        ra.start()
        rb.start()
        # Let the group settle with both members before producing, so the split is visible.
        wait_until(lambda: (m := _members(admin, group)) is not None and len(m) == 2 and all(m), 60, 0.2)
        assignment = _members(admin, group)
        assert assignment is not None
        produce(bootstrap, topic, [(f"k{i}".encode(), b"%d" % i) for i in range(n)])
        wait_until(lambda: len(ra.events) + len(rb.events) >= n, 30)
        time.sleep(0.5)  # anything extra (a repeat) would show up now
        assert metric(a.url, "gateway_sse_streams", mode="group") == 1
        ra.stop.set()
        rb.stop.set()
        ra.join(10)
        rb.join(10)
        wait_until(lambda: metric(a.url, "gateway_sse_streams", mode="group") == 0, 10)
        wait_until(lambda: metric(b.url, "gateway_sse_streams", mode="group") == 0, 10)

        pa = {e.data["partition"] for e in ra.events}
        pb = {e.data["partition"] for e in rb.events}
        assert pa and pb and not pa & pb, (pa, pb)
        assert sorted(map(set, (pa, pb)), key=min) == sorted(assignment, key=min)
        values = sorted(e.data["value"] for e in ra.events + rb.events)
        assert values == list(range(n)), "each record exactly once across the group"

        # Offsets of what was written are committed: the group stands at the end of every partition.
        ends = {p: admin_high(bootstrap, topic, p) for p in range(4)}
        wait_until(lambda: _committed(admin, group, topic, 4) == ends, 15)

        # A reconnect continues from the committed offsets: only the new records.
        produce(bootstrap, topic, [(f"k{i}".encode(), b"%d" % i) for i in range(n, n + 50)])
        with stream(b.url, topic, {"group": group, "from": "earliest"}) as events:
            again = take(events, 50)
        assert sorted(e.data["value"] for e in again) == list(range(n, n + 50))


def test_each_reconnect_starts_at_the_groups_committed_offset(
    bootstrap: str, admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topic, [(b"k", b"%d" % i) for i in range(300)])
    env = {"GATEWAY_SSE__BATCH_MAX_RECORDS": "20"}
    with GatewayProcess(bootstrap, env=env) as gw:
        starts, commits = [], []
        for _ in range(3):
            with stream(gw.url, topic, {"group": group, "from": "earliest"}) as events:
                got = take(events, 30)
            starts.append(got[0].data["offset"])
            # The stream's close commits what it wrote and leaves the group before the next member joins.
            wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="group") == 0, 10)
            commits.append(_committed(admin, group, topic, 1)[0])
        # Never behind what the client read (nothing it saw is repeated), and the next stream starts exactly there.
        assert starts[0] == 0
        assert starts[1:] == commits[:-1]
        assert all(c >= s + 30 for s, c in zip(starts, commits, strict=True))


def admin_high(bootstrap: str, topic: str, partition: int) -> int:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        c.close()


def test_a_rebalance_hands_partitions_over_without_loss_or_repeat(
    bootstrap: str, admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    """A second member joins while records flow: the first stops its revoked partitions where it committed,
    the second continues them from there, and each partition changes hands once."""
    topic = new_topic(4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = {"GATEWAY_SSE__HEARTBEAT_S": "0.2"}
    produced = 0
    stop_producing = threading.Event()

    def keep_producing() -> None:
        nonlocal produced
        while not stop_producing.is_set():
            produced += produce(
                bootstrap, topic, [(f"k{produced + i}".encode(), b"%d" % (produced + i)) for i in range(40)]
            )
            time.sleep(0.05)

    with GatewayProcess(bootstrap, env=env) as a, GatewayProcess(bootstrap, env=env) as b:
        ra = Reader(a.url, topic, group)
        ra.start()
        wait_until(lambda: (m := _members(admin, group)) is not None and len(m) == 1, 60, 0.2)
        producer = threading.Thread(target=keep_producing, daemon=True)
        producer.start()
        wait_until(lambda: len(ra.events) > 200, 30)
        rb = Reader(b.url, topic, group)
        rb.start()
        wait_until(lambda: (m := _members(admin, group)) is not None and len(m) == 2 and all(m), 60, 0.2)
        wait_until(lambda: len(rb.events) > 100, 30)
        stop_producing.set()
        producer.join(10)
        wait_until(lambda: len(ra.events) + len(rb.events) >= produced, 30)
        time.sleep(0.5)
        ra.stop.set()
        rb.stop.set()
        ra.join(10)
        rb.join(10)

    owner = {e.at: "a" for e in ra.events}
    for e in rb.events:
        assert e.at not in owner, f"{e.at} delivered twice"
        owner[e.at] = "b"
    assert sorted(int(e.data["value"]) for e in ra.events + rb.events) == list(range(produced))
    moved = 0
    for p in range(4):
        offsets = sorted(off for part, off in owner if part == p)
        assert offsets == list(range(len(offsets)))
        hands = [owner[(p, off)] for off in offsets]
        changes = sum(1 for x, y in itertools.pairwise(hands) if x != y)
        assert changes <= 1 and hands[0] == "a", (p, changes)
        moved += changes
    assert moved >= 1, "the second member took over some partitions"
