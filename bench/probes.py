"""``python -m bench.probes``: two measurements behind bench/RESULTS.md's analysis, no gateway involved.

- ``broker-cost``: the native producer sends bursts of N records to a 3-partition topic and waits for each
  burst to be acknowledged; prints the broker's CPU per record and per produce request (one request per
  partition per burst). Why batched produce through the gateway costs the broker more per record than the
  native client's tight loop: the gateway's clients keep at most 8 x 100 records outstanding.
- ``consumer-start``: a native consumer (the bench reference's settings) reads 200,000 records from the
  beginning, a new one each try; prints the time to its first record and to the last, with librdkafka's
  default ``fetch.queue.backoff.ms`` (1 s) and with the reference's 10 ms.
- ``encode-cost`` / ``produce-cost``: instructions per SSE event spent encoding it (``--python-loop``: by
  the Python loop instead of the compiled one) / per record in each step of a batched produce request
  without HTTP (``bench/instructions.py``; valgrind, no Kafka).
- ``request-cost``: instructions of the event loop's thread per batched produce request (100 records)
  through the whole ASGI app, in process, against the broker (``--gateway-env`` applies, e.g.
  ``GATEWAY_ACCESS_LOG=false``).
- ``stream-memory``: SSE streams from ``earliest`` of a topic holding more than they can buffer, whose
  clients stop reading after the first bytes; prints the gateway's RSS growth per stream once it has
  settled, i.e. what each stream's consumer prefetches while its client is slow.

Starts its own single-node Kafka (localkafka), like ``python -m bench``; ``stream-memory`` a gateway too
(``--gateway-env`` as in ``python -m bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench import clients, instructions, native, procs, scenarios
from localkafka import KafkaCluster

BURSTS = (10, 40, 100, 400, 2000)
PARTITIONS = 3
VALUE = b'{"n":1,"pad":"' + b"x" * 48 + b'"}'


def broker_cost(bootstrap: str, broker_pid: int, admin: AdminClient) -> None:
    topic = native.create_topic(admin, PARTITIONS)
    # A long linger, so each burst goes out as one request per partition when flush() sends it.
    producer = Producer(native.native_producer_config(bootstrap, **{"linger.ms": "1000"}))
    producer.list_topics(topic, timeout=10)
    for burst in BURSTS:
        total = 10_000 if burst < 40 else 40_000
        before = procs.cpu_seconds(broker_pid)
        for _ in range(total // burst):
            for i in range(burst):
                producer.produce(topic, VALUE, b"k%d" % i)
            producer.flush(10)
        used = procs.cpu_seconds(broker_pid) - before
        requests = total // burst * min(burst, PARTITIONS)
        print(f"burst {burst:5}: broker {used / total * 1e6:6.1f} us/record, {used / requests * 1e6:6.0f} us/request")


def consumer_start(bootstrap: str, admin: AdminClient, tries: int, records: int = 200_000) -> None:
    topic = native.create_topic(admin, PARTITIONS)
    native.produce(bootstrap, topic, [scenarios._record(i) for i in range(100)], records)
    for backoff in ("1000", "10"):
        for _ in range(tries):
            t0 = time.monotonic()
            consumer = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": "bench-probe-unused",
                    "enable.auto.commit": "false",
                    "fetch.wait.max.ms": "50",
                    "fetch.queue.backoff.ms": backoff,
                }
            )
            consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
            got, first = 0, 0.0
            while got < records:
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is None:
                        first = first or time.monotonic()
                        got += 1
            end = time.monotonic()
            consumer.close()
            print(
                f"fetch.queue.backoff.ms={backoff:>4}: first record after {first - t0:.2f} s, "
                f"the rest in {end - first:.2f} s ({records / (end - first):,.0f} records/s)"
            )


async def _stalled_stream(url: str, read_bytes: int) -> asyncio.StreamWriter:
    """An SSE request whose client reads ``read_bytes`` and then nothing more (connection kept open)."""
    host, port, request = clients.sse_request(url)
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
    writer.write(request)
    got = 0
    while got < read_bytes:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("stream ended early")
        got += len(chunk)
    # Stop reading: the socket buffers fill and the gateway's writes wait.
    writer.transport.pause_reading()
    return writer


def stream_memory(bootstrap: str, admin: AdminClient, streams: int, megabytes: int) -> None:
    topic = native.create_topic(admin, PARTITIONS)
    value = b'{"pad":"' + b"x" * 1000 + b'"}'
    native.produce(bootstrap, topic, [(b"k%d" % i, value) for i in range(100)], megabytes * 1000)
    print(f"topic: {megabytes * 1000:,} records of {len(value)} bytes over {PARTITIONS} partitions")
    with procs.gateway(bootstrap) as gw:
        url = gw.url + f"/topics/{topic}/events?from=earliest"

        async def run() -> None:
            await asyncio.sleep(2)  # the consumer pool's warm-up done
            before = procs.rss_mb(gw.pid)
            writers = [await _stalled_stream(url, 100_000) for _ in range(streams)]
            last = before
            for _ in range(30):  # until RSS stops growing (at most 30 s)
                await asyncio.sleep(1)
                now = procs.rss_mb(gw.pid)
                if now - last < 1:
                    break
                last = now
            grown = procs.rss_mb(gw.pid) - before
            print(
                f"{streams} stalled streams: gateway RSS {before:.0f} -> {before + grown:.0f} MB, {grown / streams:.1f} MB per stream"
            )
            for w in writers:
                w.close()

        asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "probe",
        choices=["broker-cost", "consumer-start", "encode-cost", "produce-cost", "request-cost", "stream-memory"],
    )
    parser.add_argument("--tries", type=int, default=8, help="consumer-start: new consumers per setting")
    parser.add_argument("--streams", type=int, default=20, help="stream-memory: stalled SSE streams")
    parser.add_argument("--megabytes", type=int, default=300, help="stream-memory: topic size")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--gateway-dir", type=Path, help="encode-cost, produce-cost, request-cost: count this tree's gateway package"
    )
    parser.add_argument(
        "--python-loop", action="store_true", help="encode-cost: count streams.encode_python, not the compiled loop"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="encode-cost: polls of 2,000 records encoded (produce-cost: 4x as many requests of 100; request-cost: 30x)",
    )
    args = parser.parse_args()
    gateway_dir = args.gateway_dir.resolve() if args.gateway_dir else None
    if args.probe == "encode-cost":
        instructions.encode_cost(args.rounds, gateway_dir, args.python_loop)
        return
    if args.probe == "produce-cost":
        instructions.produce_cost(args.rounds * 4, gateway_dir)
        return
    procs.GATEWAY_EXTRA_ENV.update(kv.split("=", 1) for kv in args.gateway_env)
    cluster = KafkaCluster(nodes=1).start()
    try:
        node = cluster.members[0].process
        assert node is not None
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        if args.probe == "broker-cost":
            broker_cost(cluster.bootstrap_servers, node.pid, admin)
        elif args.probe == "request-cost":
            topic = native.create_topic(admin, PARTITIONS)
            instructions.request_cost(
                args.rounds * 30, gateway_dir, cluster.bootstrap_servers, topic, dict(procs.GATEWAY_EXTRA_ENV)
            )
        elif args.probe == "stream-memory":
            stream_memory(cluster.bootstrap_servers, admin, args.streams, args.megabytes)
        else:
            consumer_start(cluster.bootstrap_servers, admin, args.tries)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
