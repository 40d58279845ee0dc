"""Processes under test and what they cost: the gateway, the trivial ceiling app, CPU and RSS from /proc.

The gateway and the trivial app are started the same way (``python -m ...`` with uvicorn on uvloop and
httptools, one worker, access log off) so the trivial app is a fair ceiling for the HTTP stack.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

from localkafka import KAFKA_VERSION, free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# File descriptors wanted for 10,000 subscribers plus everything else, in the bench and the gateway.
WANTED_NOFILE = 65536


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE as far as allowed (as root the hard limit too); return the soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in ((WANTED_NOFILE, max(hard, WANTED_NOFILE)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" field 3 is the state; utime and stime are fields 14 and 15 of the whole line.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


@dataclass
class Usage:
    """CPU and RSS of the processes of one measurement window."""

    wall_s: float
    gateway_cpu_s: float
    gateway_rss_mb: float
    broker_cpu_s: float
    load_cpu_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": self.wall_s,
            "gateway_cpu_s": self.gateway_cpu_s,
            "gateway_rss_mb": self.gateway_rss_mb,
            "broker_cpu_s": self.broker_cpu_s,
            "load_cpu_s": self.load_cpu_s,
        }


class Meter:
    """Measures a window: wall time, server CPU from /proc, and the load generator's CPU.

    The load generator's CPU is this process's own CPU time (asyncio and native clients run here)
    unless an external generator's figure is added with ``add_load``.
    """

    def __init__(self, server_pid: int | None, broker_pid: int | None) -> None:
        self.server_pid = server_pid
        self.broker_pid = broker_pid
        self.extra_load = 0.0

    def __enter__(self) -> Meter:
        self.t0 = time.monotonic()
        self.s0 = cpu_seconds(self.server_pid) if self.server_pid else 0.0
        self.b0 = cpu_seconds(self.broker_pid) if self.broker_pid else 0.0
        self.p0 = time.process_time()
        return self

    def add_load(self, cpu_s: float) -> None:
        self.extra_load += cpu_s

    def __exit__(self, *exc: object) -> None:
        self.usage = Usage(
            wall_s=time.monotonic() - self.t0,
            gateway_cpu_s=(cpu_seconds(self.server_pid) - self.s0) if self.server_pid else 0.0,
            gateway_rss_mb=rss_mb(self.server_pid) if self.server_pid else 0.0,
            broker_cpu_s=(cpu_seconds(self.broker_pid) - self.b0) if self.broker_pid else 0.0,
            load_cpu_s=time.process_time() - self.p0 + self.extra_load,
        )


def _more_files() -> None:
    raise_nofile()


@dataclass
class Server:
    """``python -m <module>`` serving HTTP on a free loopback port, until ``stop()``."""

    module: str
    env: dict[str, str] = field(default_factory=dict)
    # Where ``python -m`` runs: its ``module`` is imported from here first (another checkout to compare).
    cwd: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # The server's stderr goes here, so its tracebacks do not drown the table; counted at stop.
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, health: str = "/healthz", timeout_s: float = 30.0) -> Server:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(self.env)
        env.setdefault("GATEWAY_PORT", str(self.port))
        env.setdefault("GATEWAY_HOST", "127.0.0.1")
        self.log_path = Path(tempfile.mkdtemp(prefix="bench-")) / f"{self.module}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=env,
                cwd=self.cwd,
                preexec_fn=_more_files,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.module} exited with {self.process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + health, timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"{self.module} did not start")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def tracebacks(self) -> tuple[int, Counter[str]]:
        """How many tracebacks the server logged, and their final exception lines."""
        if self.log_path is None or not self.log_path.exists():
            return 0, Counter()
        lines = self.log_path.read_text(errors="replace").splitlines()
        kinds: Counter[str] = Counter()
        count = 0
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                count += 1
                # The exception line is the first unindented line after the traceback's frames.
                for later in lines[i + 1 :]:
                    if later and not later.startswith((" ", "Traceback", "During", "The above")):
                        kinds[later.split(":", 1)[0][:80]] += 1
                        break
        return count, kinds


def gateway_env(bootstrap: str, **extra: str) -> dict[str, str]:
    env = {
        "GATEWAY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "GATEWAY_LOG_LEVEL": "warning",
        # The 10,000-subscriber scenario needs more than the default stream bound.
        "GATEWAY_SSE__MAX_STREAMS": "20000",
    }
    env.update(GATEWAY_EXTRA_ENV)
    env.update(extra)
    return env


# ``--gateway-dir``: run the ``gateway`` package found in this directory instead of this checkout's.
GATEWAY_DIR: Path | None = None
# ``--gateway-env``: extra environment for every gateway process (e.g. GATEWAY_ACCESS_LOG=false).
GATEWAY_EXTRA_ENV: dict[str, str] = {}


# Tracebacks the servers logged, by exception, over the whole run (for the report's notes).
LOGGED: Counter[str] = Counter()


@contextlib.contextmanager
def gateway(bootstrap: str, **extra: str) -> Iterator[Server]:
    """A fresh gateway process per scenario, so CPU and RSS belong to that scenario alone."""
    server = Server("gateway", gateway_env(bootstrap, **extra), cwd=GATEWAY_DIR).start()
    try:
        yield server
    finally:
        server.stop()
        LOGGED.update(server.tracebacks()[1])
        if server.log_path is not None:
            shutil.rmtree(server.log_path.parent, ignore_errors=True)


@contextlib.contextmanager
def trivial() -> Iterator[Server]:
    server = Server("bench.trivial").start(health="/healthz")
    try:
        yield server
    finally:
        server.stop()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def versions() -> dict[str, str]:
    import confluent_kafka

    wrk = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
        wrk = (out.stdout or out.stderr).splitlines()[0].split(" [")[0].removeprefix("wrk ")
    return {
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "confluent-kafka": _version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "uvicorn": _version("uvicorn"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "fastapi": _version("fastapi"),
        "starlette": _version("starlette"),
        "msgspec": _version("msgspec"),
        "wrk": wrk,
    }
