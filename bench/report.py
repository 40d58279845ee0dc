"""The results table: printed, and appended to ``bench/RESULTS.md`` with machine, versions and command."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Usage

Target = tuple[str, float]


@dataclass
class Row:
    scenario: str
    metric: str
    gateway: float | int | str
    reference: float | int | str | None
    ref_name: str
    ratio: float | None
    target: Target | None
    met: bool | None


def _num(v: float | int | str | None) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, int) or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _target(t: Target | None) -> str:
    if t is None:
        return ""
    op, x = t
    return f"ratio ≥ {x:g}" if op == ">=ratio" else f"{op.replace('<=', '≤')} {x:g}"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    usages: list[tuple[str, Usage, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[tuple[str, list[str]]] = field(default_factory=list)

    def row(
        self,
        scenario: str,
        metric: str,
        gateway: float | int | str,
        reference: float | int | str | None,
        ref_name: str,
        *,
        target: Target | None = None,
        ratio: bool = True,
    ) -> None:
        r: float | None = None
        if ratio and isinstance(gateway, int | float) and isinstance(reference, int | float) and reference:
            r = gateway / reference
        met: bool | None = None
        if target is not None:
            op, x = target
            value = r if op == ">=ratio" else gateway
            if isinstance(value, int | float) and not math.isnan(value):
                met = {">=ratio": value >= x, "<=": value <= x, "<": value < x}[op]
        self.rows.append(Row(scenario, metric, gateway, reference, ref_name, r, target, met))
        print(f"  {scenario} | {metric}: gateway {_num(gateway)}"
              + (f", {ref_name} {_num(reference)}" if reference is not None else "")
              + (f", ratio {r:.2f}" if r is not None else ""), flush=True)  # fmt: skip

    def usage(self, label: str, usage: Usage, load: str) -> None:
        self.usages.append((label, usage, load))

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def markdown(self, header: list[str]) -> str:
        out = list(header)
        out += [
            "",
            "| scenario | metric | gateway | reference | ratio | target | met |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            ref = f"{_num(r.reference)} ({r.ref_name})" if r.reference is not None else ""
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
            out.append(
                f"| {r.scenario} | {r.metric} | {_num(r.gateway)} | {ref} | {ratio} | {_target(r.target)} | {met} |"
            )
        out += [
            "",
            "CPU is user+system seconds over the measured window (% of one core in brackets); the load "
            "generator's CPU is wrk's rusage, or this Python process's own CPU for the asyncio and native clients.",
            "",
            "| window | wall s | gateway CPU s | gateway RSS MB | broker CPU s | load generator | its CPU s |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        for label, u, load in self.usages:

            def pct(cpu: float, wall: float = u.wall_s) -> str:
                return f"{cpu:.1f} ({100 * cpu / wall:.0f}%)" if wall else f"{cpu:.1f}"

            gw_cpu = pct(u.gateway_cpu_s) if u.gateway_rss_mb else ""
            rss = f"{u.gateway_rss_mb:.0f}" if u.gateway_rss_mb else ""
            out.append(
                f"| {label} | {u.wall_s:.1f} | {gw_cpu} | {rss} | {pct(u.broker_cpu_s)} | {load} | {pct(u.load_cpu_s)} |"
            )
        if self.notes:
            out += ["", "Notes:", ""] + [f"- {n}" for n in self.notes]
        for title, lines in self.profiles:
            out += ["", f"#### Profile: {title}", "", *lines]
        return "\n".join(out) + "\n"

    def append_to(self, path: Path, header: list[str]) -> str:
        text = self.markdown(header)
        existing = path.read_text() if path.exists() else ""
        path.write_text(existing.rstrip("\n") + "\n\n" + text if existing else text)
        return text
