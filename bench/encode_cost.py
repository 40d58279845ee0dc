"""``python -m bench.probes encode-cost``: instructions per SSE event spent in ``streams.encode_batch``.

Counted by valgrind's callgrind, which counts instructions rather than time, so the figure repeats
whatever else the machine is doing (this VM's speed varies by 20 % and more between quiet runs). The
records are the SSE scenario's on 3 partitions; the count is the difference
between a run that encodes ``rounds`` polls of 2,000 records and one that encodes none, so start-up cancels.
``--gateway-dir`` counts another tree's gateway (e.g. a ``git archive`` of an earlier commit).
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


# The measured program. Text, not an import of this module, so that PYTHONPATH can hold just the gateway
# tree being measured (another tree's ``bench`` package would not have this file). The records are
# ``bench.scenarios._record``'s.
PROGRAM = """
import sys
import msgspec
from confluent_kafka import Message
from gateway import streams
from gateway.kafka.metadata import TopicInfo

topic, rounds, poll = "bench-sse", int(sys.argv[1]), int(sys.argv[2])
spec = streams.StreamSpec(TopicInfo(topic, 3), (0, 1, 2), "earliest", None, None, "string", "json")
msgs = []
for i in range(poll):
    key = f"user-{i % 100}"
    value = msgspec.json.encode({"user": key, "action": "click", "n": i, "page": "/products/42"})
    ts = 1_764_280_000_000 + i
    msgs.append(Message(topic=topic, partition=i % 3, offset=100_000 + i, key=key.encode(), value=value, timestamp=(1, ts)))
topic_json = msgspec.json.encode(topic)
for _ in range(rounds):
    streams.encode_batch(spec, topic_json, {0: 100_000, 1: 100_000, 2: 100_000}, msgs)
"""


def _instructions(rounds: int, gateway_dir: Path | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = str(gateway_dir or root)
        env["PYTHONHASHSEED"] = "0"  # the same string hashes, so the same dict probes, every run
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                "-c",
                PROGRAM,
                str(rounds),
                str(POLL),
            ],
            env=env,
            cwd=tmp,  # not the checkout: ``-c`` puts the working directory first on sys.path
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise RuntimeError(f"the measured program failed: {out.stderr[-2000:]}")
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(found.group(1))


def run(rounds: int, gateway_dir: Path | None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("encode-cost needs valgrind (apt-get install -y valgrind)")
    base = _instructions(0, gateway_dir)
    total = _instructions(rounds, gateway_dir)
    where = gateway_dir or "this checkout"
    print(f"encode_batch ({where}): {(total - base) / (rounds * POLL):,.0f} instructions per event")
