"""``python -m localkafka``: run a local KRaft cluster until interrupted.

``--gateway`` also runs ``kafka-gateway`` against it (this is ``make dev``), after creating a
``demo`` topic so the README's curl examples work at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from localkafka import KafkaCluster, ensure_jars

DEMO_TOPIC = "demo"


def _create_demo_topic(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(DEMO_TOPIC, 3, 1)])[DEMO_TOPIC].result(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkafka", description=__doc__)
    parser.add_argument("--nodes", type=int, default=1, help="number of broker+controller nodes")
    parser.add_argument("--fetch-only", action="store_true", help="only fetch and cache the jars")
    parser.add_argument("--gateway", action="store_true", help="also run the gateway against the cluster")
    args = parser.parse_args(argv)
    libs = ensure_jars()
    if args.fetch_only:
        print(libs)
        return 0
    started = time.monotonic()
    cluster = KafkaCluster(nodes=args.nodes).start()
    print(
        f"Kafka ready at {cluster.bootstrap_servers} in {time.monotonic() - started:.1f} s "
        f"(data in {cluster.workdir}); Ctrl-C stops it.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    gateway: subprocess.Popen[bytes] | None = None
    try:
        if args.gateway:
            _create_demo_topic(cluster.bootstrap_servers)
            env = dict(os.environ, GATEWAY_KAFKA__BOOTSTRAP_SERVERS=cluster.bootstrap_servers)
            print(f"Topic '{DEMO_TOPIC}' created (3 partitions); starting kafka-gateway.", flush=True)
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
            return gateway.wait()
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
        cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
