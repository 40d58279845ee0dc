"""``python -m bench [--quick] [--only NAME ...] [--profile]``: the gateway against its references.

Starts its own single-node Kafka (localkafka) unless ``KAFKA_BOOTSTRAP_SERVERS`` is set, runs each
scenario against a fresh gateway process, prints the table and appends it to ``bench/RESULTS.md``
with the machine, versions, date and the exact command. Figures of the gateway and of its reference
(native confluent-kafka, or a trivial FastAPI endpoint) always come from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import uvloop

from bench import native, procs, profile, scenarios, wrk
from bench.report import Report
from localkafka import KafkaCluster

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (about two minutes)")
    parser.add_argument(
        "--only", action="append", choices=list(scenarios.SCENARIOS), metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(scenarios.SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true", help="sample the gateway with py-spy in single, batch, ndjson and sse"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to append to")
    parser.add_argument(
        "--gateway-dir", type=Path, help="run the gateway package from this directory (e.g. another checkout)"
    )
    parser.add_argument(
        "--gateway-env", action="append", default=[], metavar="NAME=VALUE", help="extra gateway setting (repeatable)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a line to put under the run's heading")
    args = parser.parse_args(argv)

    if not wrk.available():
        print("bench: wrk is needed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if args.profile and not profile.available():
        print("bench: --profile needs py-spy (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    # The asyncio clients run on uvloop, as the servers do: a cheaper load generator.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    nofile = procs.raise_nofile()
    for item in args.gateway_env:
        name, _, value = item.partition("=")
        procs.GATEWAY_EXTRA_ENV[name] = value
        # The native reference reads the same settings (producer_config), so it changes alike.
        os.environ[name] = value
    if args.gateway_dir:
        procs.GATEWAY_DIR = args.gateway_dir.resolve()
        sys.path.insert(0, str(procs.GATEWAY_DIR))
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    names = args.only or list(scenarios.SCENARIOS)
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    report = Report()
    failed: list[str] = []

    profile_dir = scenarios.PROFILE_DIR / f"{started:%Y%m%d-%H%M%S}-{os.getpid()}"
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    t_broker = time.monotonic()
    cluster = None if external else KafkaCluster(nodes=1).start()
    broker_start_s = time.monotonic() - t_broker
    try:
        bootstrap = external or cluster.bootstrap_servers  # type: ignore[union-attr]
        broker_pid = cluster.members[0].process.pid if cluster and cluster.members[0].process else None
        bench = scenarios.Bench(bootstrap, broker_pid, sizes, report, profile=args.profile, profile_dir=profile_dir)
        for name in names:
            print(f"bench: {name} ...", flush=True)
            t = time.monotonic()
            try:
                scenarios.SCENARIOS[name](bench)
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                report.note(f"{name} failed: {type(exc).__name__}: {exc}")
            print(f"bench: {name} took {time.monotonic() - t:.0f} s", flush=True)
    finally:
        if cluster is not None:
            cluster.close()

    for kind, count in procs.LOGGED.most_common():
        report.note(f"the gateway logged {count} traceback(s) ending in {kind}")
    m, v = procs.machine(), procs.versions()
    conf = native.native_producer_config("unused")
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = [
        f"## {started:%Y-%m-%d %H:%M} UTC — `{command.strip()}`" + (" (quick: smoke sizes)" if args.quick else ""),
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['ram']} RAM, Linux {m['kernel']}; "
        f"open files limit {nofile}. Took {time.monotonic() - t0:.0f} s.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Broker: {'external ' + external if external else f'single-node KRaft from localkafka (started in {broker_start_s:.1f} s)'}. "
        "Producer config of gateway and native client: the gateway's `producer_config()` ("
        + ", ".join(
            f"{k}={conf.get(k)}"
            for k in ("acks", "enable.idempotence", "linger.ms", "partitioner", "max.in.flight.requests.per.connection")
        )
        + ").",
    ]
    if args.gateway_dir:
        header += ["", f"Gateway code from `{args.gateway_dir}`, not this checkout."]
    if args.gateway_env:
        header += ["", "Gateway environment added: " + ", ".join(f"`{e}`" for e in args.gateway_env) + "."]
    if args.note:
        header += ["", args.note]
    if args.profile:
        header += ["", f"Raw py-spy stacks (collapsed, not committed): `bench/profiles/{profile_dir.name}/`."]
    if args.no_write:
        print(report.markdown(header))
    else:
        print(report.append_to(args.results, header))
        print(f"bench: appended to {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
