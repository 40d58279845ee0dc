"""HTTP load with Debian's ``wrk``: a Lua script POSTs a fixed body and reports wrk's own latency
distribution as one JSON line; the CPU wrk used comes from ``wait4``'s rusage.

wrk is written in C on epoll, so it is not the bottleneck at the rates a Python server reaches; its CPU
is reported anyway so the reader can judge (it shares the machine's cores with the server and broker).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    requests: int
    ok: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    # CPU the server under load used in the same window (filled in by the caller, from /proc).
    server_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def server_cpu_us(self, per_request: int = 1) -> float:
        """Server CPU per request (or per record with ``per_request`` records in each)."""
        return self.server_cpu_s / (self.ok * per_request) * 1e6 if self.ok else float("nan")


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, body: bytes, *, connections: int, duration_s: float, threads: int = 1) -> WrkResult:
    """POST ``body`` to ``url`` over ``connections`` keep-alive connections for ``duration_s``."""
    if not available():
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        cmd = [
            "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
            "--timeout", "10s", "-s", str(script), url,
        ]  # fmt: skip
        env = dict(os.environ, BENCH_BODY=str(body_path))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    d = json.loads(line.split(" ", 1)[1])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return WrkResult(
        requests=d["requests"],
        ok=d["requests"] - d["status"],
        errors=errors,
        duration_s=d["duration_us"] / 1e6,
        p50_ms=d["p50_us"] / 1e3,
        p90_ms=d["p90_us"] / 1e3,
        p99_ms=d["p99_us"] / 1e3,
        max_ms=d["max_us"] / 1e3,
        cpu_s=rusage.ru_utime + rusage.ru_stime,
    )
