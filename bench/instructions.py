"""Instruction counts of the gateway's per-record work, for ``python -m bench.probes encode-cost|produce-cost``.

Counted by valgrind's callgrind, which counts instructions rather than time, so the figures repeat
whatever else the machine is doing (this VM's speed varies by 20 % and more between quiet runs). Each
figure is the difference between a run that does the work ``rounds`` times and one that does it zero
times, so start-up cancels. ``--gateway-dir`` counts another tree's gateway (e.g. a ``git archive`` of an
earlier commit).

- ``encode-cost``: ``streams.encode_batch`` per SSE event, the SSE scenario's records on 3 partitions
  (``--python-loop``: ``streams.encode_python``, the loop a gateway without its compiled module runs).
- ``produce-cost``: the batched produce scenario's request body (100 records) through the steps of the
  produce route without HTTP, each step's instructions per record: decoding the body
  (``records.parse_body``), validating and encoding the records (``records.prepare``), handing them to
  librdkafka (``GatewayProducer.produce_batch``; the producer points at no broker, so nothing is sent and
  no delivery report comes: those are served on the event loop as they arrive) and encoding the
  answer's 100 results with msgspec, as the route does when some record failed (an all-delivered answer
  is written from the delivery reports in C, ``Reports.json``, which ``request-cost`` counts). The cyclic
  garbage collector is off (its passes are not counted).
- ``request-cost``: one whole produce request of the batched scenario (100 records) through the
  gateway's ASGI app in process, every middleware, the route, librdkafka's enqueue and the delivery
  reports served on the event loop, against a real broker; the event loop's thread only (uvicorn's HTTP
  parsing and the socket are not in it). The reports arrive when the broker answers, so how many come
  per wake-up varies a little from run to run (a few percent over 150 requests).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

POLL = 2000
BATCH = 100


# The measured programs. Text, not an import of this module, so that PYTHONPATH can hold just the gateway
# tree being measured (another tree's ``bench`` package would not have this file). The records are
# ``bench.scenarios._record``'s.
ENCODE = """
import sys
import msgspec
from confluent_kafka import Message
from gateway import streams
from gateway.kafka.metadata import TopicInfo

topic, rounds, poll = "bench-sse", int(sys.argv[1]), int(sys.argv[2])
encode = getattr(streams, sys.argv[3])
spec = streams.StreamSpec(TopicInfo(topic, 3), (0, 1, 2), "earliest", None, None, "string", "json")
msgs = []
for i in range(poll):
    key = f"user-{i % 100}"
    value = msgspec.json.encode({"user": key, "action": "click", "n": i, "page": "/products/42"})
    ts = 1_764_280_000_000 + i
    msgs.append(Message(topic=topic, partition=i % 3, offset=100_000 + i, key=key.encode(), value=value, timestamp=(1, ts)))
topic_json = msgspec.json.encode(topic)
for _ in range(rounds):
    encode(spec, topic_json, {0: 100_000, 1: 100_000, 2: 100_000}, msgs)
"""

PRODUCE = """
import asyncio, gc, sys
import msgspec
from gateway import records
from gateway.kafka.delivery import Delivered
from gateway.kafka.producer import GatewayProducer

rounds, batch, step = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = msgspec.json.encode(
    {"records": [
        {"key": f"user-{i % 100}", "value": {"user": f"user-{i % 100}", "action": "click", "n": i, "page": "/products/42"}}
        for i in range(batch)
    ]}
)
formats = records.Formats(key="string", value="json")
delivered = [Delivered(i % 3, 1_000 + i, 1_764_280_000_000 + i) for i in range(batch)]

async def main():
    # Without the cyclic collector: when its passes fall depends on every allocation before, which would
    # move instructions between steps from run to run (the gateway runs it rarely: gateway/__main__.py).
    gc.disable()
    conf = {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": "600000"}
    producer = GatewayProducer(conf, max_in_flight_records=10**9, max_in_flight_bytes=10**12)
    # A whole round first, in every run (and uncounted by the differences): it pays for growing the
    # allocator's pools and for librdkafka's first produce to a topic.
    for n in range(rounds + 1):
        last = "respond" if n == 0 else step
        items, _ = records.parse_body(body, formats)
        if last == "parse":
            continue
        prepared = records.prepare(items, formats, 1 << 20)
        if last == "prepare":
            continue
        producer.produce_batch("bench", prepared, [None] * len(prepared), wait=False)
        if last == "produce":
            continue
        msgspec.json.encode({"results": delivered})

asyncio.run(main())
import os
os._exit(0)  # not flush() nor close(): the records have nowhere to go
"""
STEPS = ("parse", "prepare", "produce", "respond")

REQUEST = """
import gc, os, sys
import msgspec
import uvloop
from gateway.app import create_app
from gateway.settings import Settings

topic, rounds, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = msgspec.json.encode(
    {"records": [
        {"key": f"user-{i % 100}", "value": {"user": f"user-{i % 100}", "action": "click", "n": i, "page": "/products/42"}}
        for i in range(batch)
    ]}
)
path = f"/topics/{topic}/records"
headers = [(b"host", b"gateway"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

async def main():
    gc.disable()  # as in PRODUCE: the collector's passes would move between runs
    app = create_app(Settings())
    async with app.router.lifespan_context(app) as state:
        statuses = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        # 20 requests first in every run (uncounted by the difference): connections, metadata, warm caches.
        for _ in range(20 + rounds):
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000),
                     "root_path": "", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "headers": headers, "state": dict(state or {})}
            await app(scope, receive, send)
        if set(statuses) != {200}:
            raise SystemExit(f"answers other than 200: {sorted(set(statuses))}")
    os._exit(0)

uvloop.run(main())
"""


def _instructions(program: str, args: list[str], gateway_dir: Path | None, **env_extra: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, **env_extra)
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = str(gateway_dir or root)
        env["PYTHONHASHSEED"] = "0"  # the same string hashes, so the same dict probes, every run
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                # The main thread's count alone: librdkafka's threads do work that depends on time
                # (reconnects, wake-ups), which the probes leave out.
                "--separate-threads=yes",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                "-c",
                program,
                *args,
            ],
            env=env,
            cwd=tmp,  # not the checkout: ``-c`` puts the working directory first on sys.path
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the measured program failed: {out.stderr[-2000:]}")
        main_thread = (Path(tmp) / "out-01").read_text()
    found = re.search(r"^(?:summary|totals): (\d+)", main_thread, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(found.group(1))


def _need_valgrind(probe: str) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit(f"{probe} needs valgrind (apt-get install -y valgrind)")


def encode_cost(rounds: int, gateway_dir: Path | None, python_loop: bool = False) -> None:
    _need_valgrind("encode-cost")
    function = "encode_python" if python_loop else "encode_batch"
    base = _instructions(ENCODE, ["0", str(POLL), function], gateway_dir)
    total = _instructions(ENCODE, [str(rounds), str(POLL), function], gateway_dir)
    where = gateway_dir or "this checkout"
    print(f"{function} ({where}): {(total - base) / (rounds * POLL):,.0f} instructions per event")


def produce_cost(rounds: int, gateway_dir: Path | None) -> None:
    _need_valgrind("produce-cost")
    before = _instructions(PRODUCE, ["0", str(BATCH), "respond"], gateway_dir)
    parts = []
    for step in STEPS:
        total = _instructions(PRODUCE, [str(rounds), str(BATCH), step], gateway_dir)
        parts.append((step, (total - before) / (rounds * BATCH)))
        before = total
    where = gateway_dir or "this checkout"
    print(f"produce steps ({where}), instructions per record of a {BATCH}-record request:")
    for step, per_record in parts:
        print(f"  {step:8} {per_record:8,.0f}")
    print(f"  {'total':8} {sum(n for _, n in parts):8,.0f}")


def request_cost(rounds: int, gateway_dir: Path | None, bootstrap: str, topic: str, env: dict[str, str]) -> None:
    """Instructions of the event loop's thread per produce request of ``BATCH`` records (see the module doc)."""
    _need_valgrind("request-cost")
    conf = {"GATEWAY_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "GATEWAY_LOG_LEVEL": "warning", **env}
    base = _instructions(REQUEST, [topic, "0", str(BATCH)], gateway_dir, **conf)
    total = _instructions(REQUEST, [topic, str(rounds), str(BATCH)], gateway_dir, **conf)
    where = gateway_dir or "this checkout"
    print(
        f"produce request of {BATCH} records ({where}): {(total - base) / rounds:,.0f} instructions on the event loop"
    )
