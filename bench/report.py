"""The Markdown report and SVG chart of `bench/load.py`."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

# The runs the report reads by label (bench/load.py measures them).
PRECOMPUTED = "service, scores precomputed"
ONE_WORKER_PAIRED = "service, 1 worker (paired)"
TWO_WORKERS = "service, 2 workers"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _find(results: list[Any], target: str, workload: str, conns: int) -> Any | None:
    return next(
        (
            r
            for r in results
            if r.target == target and r.workload == workload and r.connections == conns
        ),
        None,
    )


def chart(results: list[Any], path: Path) -> None:
    """Throughput at 8 connections, service next to floor, per workload (SVG bars)."""
    workloads = ["patient-view", "order-select", "order-sign"]
    rows = [(w, _find(results, "service", w, 8), _find(results, "floor", w, 8)) for w in workloads]
    top = max([r.rps for _, a, b in rows for r in (a, b) if r] + [1.0])
    width, height, left, bottom = 640, 300, 60, 40
    plot_h = height - bottom - 30
    group = (width - left - 20) / len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        "<title>Throughput at 8 connections: service and floor</title>",
        f'<text x="{left}" y="18" font-size="14">Requests per second at 8 connections '
        "(one worker)</text>",
    ]
    for i in range(5):
        value = top * i / 4
        y = height - bottom - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.0f}</text>')
    for index, (workload, service, floor) in enumerate(rows):
        x0 = left + index * group + group * 0.15
        bar = group * 0.3
        for offset, result, colour, label in (
            (0, service, "#1f6feb", "service"),
            (bar, floor, "#999", "floor"),
        ):
            if result is None:
                continue
            h = plot_h * result.rps / top
            y = height - bottom - h
            parts.append(
                f'<rect x="{x0 + offset:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{label}: '
                f"{result.rps:.0f} rps</title></rect>"
            )
            parts.append(
                f'<text x="{x0 + offset + bar / 2:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle">{result.rps:.0f}</text>'
            )
        parts.append(
            f'<text x="{x0 + bar:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{escape(workload)}</text>'
        )
    parts.append(
        f'<rect x="{width - 170}" y="30" width="12" height="12" fill="#1f6feb"/>'
        f'<text x="{width - 152}" y="40">service</text>'
        f'<rect x="{width - 100}" y="30" width="12" height="12" fill="#999"/>'
        f'<text x="{width - 82}" y="40">floor</text>'
    )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


_DATABASES = {"postgresql": "a fresh PostgreSQL database", "sqlite": "SQLite"}


def render(
    results: list[Any],
    startup: dict[str, float],
    rss: dict[str, float],
    duration: int,
    chart_path: Path,
    database: str = "postgresql",
    warmup: int = 0,
) -> str:
    chart(results, chart_path)
    lines = [
        "# Benchmarks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({_cpu()}), "
        f"{duration} s per measurement"
        + (f" after {warmup} s of the same load, not measured" if warmup else "")
        + ", `python -m bench.load` (`make bench-load`). The service "
        "runs as in production (uvicorn, JWT verification on with a test tenant, Redis score "
        f"cache, {_DATABASES[database]} for the audit log, the bundled rule pack) pinned to "
        "core 0 beside the floor app; wrk runs on core 1 beside the 50 ms FHIR server (the "
        "EHR's machine). Two workers run on both cores, so they share core 1 with wrk, "
        "PostgreSQL and Redis. Bodies rotate over all 18 Synthea fixture patients; each "
        "service's prefetch templates (as advertised in discovery) decide what a body holds.",
        "",
        f"![Throughput at 8 connections]({chart_path.name})",
        "",
        "## Service and floor",
        "",
        "| workload | conns | service rps | floor rps | ratio | service p50 / p95 / p99 ms | "
        "floor p99 ms | service CPU ms/req | errors | wrk CPU |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for result in results:
        if result.target != "service" or result.workload == "missing-prefetch":
            continue
        floor = _find(results, "floor", result.workload, result.connections)
        ratio = f"{result.rps / floor.rps:.0%}" if floor else "—"
        lines.append(
            f"| {result.workload} | {result.connections} | {result.rps:.0f} | "
            f"{floor.rps:.0f} | {ratio} | {result.p50:.1f} / {result.p95:.1f} / {result.p99:.1f} "
            f"| {floor.p99:.1f} | {result.cpu_ms_per_request:.2f} | {result.errors} | "
            f"{result.wrk_cpu_share:.0%} |"
            if floor
            else ""
        )
    lines += [
        "",
        "## Other runs",
        "",
        "| run | workload | conns | rps | p50 / p95 / p99 ms | CPU ms/req | errors |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for result in results:
        if result.target == "service" and result.workload != "missing-prefetch":
            continue
        if result.target == "floor":
            continue
        label = result.target
        if result.workload == "missing-prefetch":
            label = "service, prefetch fetched from a 50 ms FHIR server" + (
                "" if result.target == "service" else ", scores precomputed"
            )
        lines.append(
            f"| {label} | {result.workload} | {result.connections} | {result.rps:.0f} | "
            f"{result.p50:.1f} / {result.p95:.1f} / {result.p99:.1f} | "
            f"{result.cpu_ms_per_request:.2f} | {result.errors} |"
        )
    lines += ["", "## Start-up and memory", "", "| what | value |", "|---|---:|"]
    lines += [f"| start-up, {k} | {v:.2f} s |" for k, v in startup.items()]
    lines += [f"| peak RSS, {k} | {v:.0f} MB |" for k, v in rss.items()]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets(results, startup, rss):
        lines.append(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
    lines.append("")
    return "\n".join(lines)


def targets(
    results: list[Any], startup: dict[str, float], rss: dict[str, float]
) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    pv = _find(results, "service", "patient-view", 8)
    floor = _find(results, "floor", "patient-view", 8)
    if pv and floor:
        ratio = pv.rps / floor.rps
        out.append(
            ("patient-view throughput at 8 ≥ 50 % of the floor", f"{ratio:.0%}", ratio >= 0.5)
        )
        out.append(("patient-view p99 at 8 ≤ 25 ms", f"{pv.p99:.1f} ms", pv.p99 <= 25))
    for target, name in (
        ("service", "missing prefetch (50 ms FHIR server) p99 at 8 ≤ 250 ms"),
        (
            PRECOMPUTED,
            "… the same with the scores precomputed (`cds-service precompute`)",
        ),
    ):
        missing = _find(results, target, "missing-prefetch", 8)
        if missing:
            out.append((name, f"{missing.p99:.1f} ms", missing.p99 <= 250))
    if rss:
        worst = max(rss.get("service, 1 worker", 0), rss.get("service, 2 workers (each)", 0))
        out.append(("RSS per worker ≤ 200 MB", f"{worst:.0f} MB", worst <= 200))
    big = startup.get("bundled + 200 generated rules")
    if big is not None:
        out.append(("start-up with 200 rules ≤ 2 s", f"{big:.2f} s", big <= 2))
    ones = _rounds(results, ONE_WORKER_PAIRED)
    twos = _rounds(results, TWO_WORKERS)
    if ones and twos:
        scale = statistics.median(r.rps for r in twos) / statistics.median(r.rps for r in ones)
        each = [f"{r.rps / o.rps:.2f}x" for o, r in zip(ones, twos, strict=False)]
        busy = " / ".join(
            f"{statistics.median(r.worker_cpu_shares[i] for r in twos):.0%}"
            for i in range(min(len(r.worker_cpu_shares) for r in twos))
        )
        measured = (
            f"{scale:.2f}x, median of {len(twos)} alternating rounds ({', '.join(each)}); "
            f"median CPU of each worker: {busy}"
        )
        out.append(("2 workers ≈ 2 x one worker (patient-view at 8)", measured, scale >= 1.7))
    return out


def _rounds(results: list[Any], target: str) -> list[Any]:
    return [
        r
        for r in results
        if r.target == target and r.workload == "patient-view" and r.connections == 8
    ]
