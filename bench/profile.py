"""py-spy sampling of the gateway under load, summarised as where the time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``, root first). Each
sample is put in one bucket by walking from the innermost frame outwards and taking the first frame
that a rule recognises, so C work (msgspec, librdkafka) counts for the Python line that called it.
Idle samples (threads waiting in epoll or a condition) are not recorded by py-spy's default.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# (bucket, regex on one frame "Class.function (path/file.py:line)"; py-spy prints paths relative to
# sys.path, e.g. "gateway/records.py", "starlette/routing.py"). Most specific first within a frame.
_P = r"\((?:.*/)?"
RULES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(rx))
    for name, rx in [
        (
            "JSON decode + schema (records.parse_body/parse_line, msgspec)",
            rf"(parse_body|parse_line) {_P}gateway/records\.py",
        ),
        (
            "record validation + encoding (records.prepare, compiled: counted in its caller's line; codec)",
            rf"prepare {_P}gateway/(records\.py|_records\.pyx)|{_P}gateway/codec\.py",
        ),
        ("produce() into librdkafka (GatewayProducer.produce/produce_batch)", r"GatewayProducer\.produce(_batch)? \("),
        ("delivery: resolve futures on the loop (_resolve)", r"GatewayProducer\._resolve \("),
        (
            "delivery reports served on the loop (_serve: librdkafka's queue, C callbacks, results)",
            r"GatewayProducer\.(_serve|_on_failure|_on_error) \(",
        ),
        ("publisher (reserve, submit, outcomes)", rf"{_P}gateway/publish\.py"),
        ("produce route's own code (api/produce.py: body, response)", rf"{_P}gateway/api/produce(_ndjson)?\.py"),
        ("SSE frames (streams, sse, cursor)", rf"{_P}gateway/(streams|sse|cursor)\.py"),
        ("Kafka consumer calls (kafka/consumer.py)", rf"{_P}gateway/kafka/consumer\.py"),
        ("metrics", rf"{_P}gateway/metrics\.py|prometheus_client/"),
        ("logging (access log lines, tracebacks)", rf"{_P}(logging/|traceback\.py|linecache\.py|ast\.py|textwrap\.py)"),
        ("other gateway code", rf"{_P}gateway/"),
        (
            "FastAPI/Starlette/anyio (routing, params, request, response)",
            rf"{_P}(fastapi|starlette|sse_starlette|anyio)/",
        ),
        ("uvicorn HTTP protocol (httptools)", rf"{_P}(uvicorn|httptools)/"),
        ("asyncio / uvloop machinery", rf"{_P}(asyncio|uvloop)/"),
        ("threads / executor (waiting on locks included)", rf"{_P}(threading\.py|concurrent/futures/)"),
    ]
]
# Costs that cut across the buckets: share of samples with such a frame anywhere on the stack.
INCLUSIVE: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(rx))
    for name, rx in [
        ("FastAPI solve_dependencies (query/header/path params, Depends)", r"solve_dependencies \("),
        (
            "sync dependency run in anyio's threadpool (run_in_threadpool + worker threads)",
            r"run_in_threadpool \(|WorkerThread\.run \(|to_thread\.py",
        ),
        ("reading the body (Request.stream/body)", r"Request\.(stream|body) \("),
        ("Response construction/sending (starlette Response)", r"Response\.(__init__|__call__|render|init_headers) \("),
        ("exception handling + logging tracebacks", r"Logger\.(exception|error|_log) \("),
        ("asyncio.wait / futures on the request path", r"asyncio/tasks\.py|Future\.(set_result|add_done_callback)"),
    ]
]
OTHER = "other (interpreter, unattributed)"


def available() -> bool:
    return shutil.which("py-spy") is not None or Path(_venv_py_spy()).exists()


def _venv_py_spy() -> str:
    import sys

    return str(Path(sys.executable).parent / "py-spy")


def start(pid: int, out: Path, duration_s: float | None, rate: int = 200) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``duration_s`` (or until SIGINT) without pausing it (``--nonblocking``)."""
    exe = _venv_py_spy() if Path(_venv_py_spy()).exists() else "py-spy"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
        "--output", str(out),
    ]  # fmt: skip
    if duration_s is not None:
        cmd += ["--duration", str(max(1, round(duration_s)))]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Summary:
    samples: int
    buckets: list[tuple[str, int]]
    top_self: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]

    def lines(self, cpu_us_per_record: float | None = None) -> list[str]:
        out = [f"{self.samples} non-idle samples."]
        if cpu_us_per_record:
            out[0] += f" Gateway CPU per record: {cpu_us_per_record:.1f} µs."
        out.append("")
        out.append("| where | % of samples |" + (" µs/record |" if cpu_us_per_record else ""))
        out.append("|---|---:|" + ("---:|" if cpu_us_per_record else ""))
        for name, n in self.buckets:
            pct = 100 * n / self.samples
            row = f"| {name} | {pct:.1f} |"
            if cpu_us_per_record:
                row += f" {cpu_us_per_record * pct / 100:.1f} |"
            out.append(row)
        out.append("")
        out.append("Across buckets (samples with such a frame anywhere on the stack):")
        out.append("")
        out.append("| cost | % of samples |")
        out.append("|---|---:|")
        for name, n in self.inclusive:
            out.append(f"| {name} | {100 * n / self.samples:.1f} |")
        out.append("")
        out.append("Top functions by own samples (C callees counted in the calling line):")
        out.append("")
        out.append("| function (file:line) | % |")
        out.append("|---|---:|")
        for frame, n in self.top_self:
            out.append(f"| `{frame}` | {100 * n / self.samples:.1f} |")
        return out


def _short(frame: str) -> str:
    return re.sub(r"\(/.*?/(site-packages|lib/python3\.\d+)/", "(", frame)


def summarise(path: Path, top: int = 15) -> Summary:
    buckets: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaves[_short(frames[-1])] += n
        bucket = OTHER
        for frame in reversed(frames):
            hit = next((name for name, rx in RULES if rx.search(frame)), None)
            if hit:
                bucket = hit
                break
        buckets[bucket] += n
        for name, rx in INCLUSIVE:
            if rx.search(stack):
                inclusive[name] += n
    return Summary(total, buckets.most_common(), leaves.most_common(top), [(k, inclusive[k]) for k, _ in INCLUSIVE])
