"""``python -m bench.probes``: two measurements behind bench/RESULTS.md's analysis, no gateway involved.

- ``broker-cost``: the native producer sends bursts of N records to a 3-partition topic and waits for each
  burst to be acknowledged; prints the broker's CPU per record and per produce request (one request per
  partition per burst). Why batched produce through the gateway costs the broker more per record than the
  native client's tight loop: the gateway's clients keep at most 8 x 100 records outstanding.
- ``consumer-start``: a native consumer (the bench reference's settings) reads 200,000 records from the
  beginning, a new one each try; prints the time to its first record and to the last, with librdkafka's
  default ``fetch.queue.backoff.ms`` (1 s) and with the reference's 10 ms.

Starts its own single-node Kafka (localkafka), like ``python -m bench``.
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench import native, procs, scenarios
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=["broker-cost", "consumer-start"])
    parser.add_argument("--tries", type=int, default=8, help="consumer-start: new consumers per setting")
    args = parser.parse_args()
    cluster = KafkaCluster(nodes=1).start()
    try:
        node = cluster.members[0].process
        assert node is not None
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        if args.probe == "broker-cost":
            broker_cost(cluster.bootstrap_servers, node.pid, admin)
        else:
            consumer_start(cluster.bootstrap_servers, admin, args.tries)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
