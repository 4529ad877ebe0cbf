"""Load benchmark: the real service under wrk, side by side with the floor, on this machine.

    python -m bench.load [--duration 5] [--out docs/benchmarks.md]        (make bench-load)

Starts, as in production: `cds-service serve` (uvicorn; JWT verification on with a test tenant;
Redis score cache; a fresh PostgreSQL database for audit and feedback, `--database sqlite` for
the embedded default), the floor app (`bench/floor.py`: same framework and JSON library, parse
the body, return one fixed card) and a local FHIR server answering after 50 ms. The service and
the floor are pinned to core 0; wrk runs on core 1 (`taskset`) beside the FHIR server (which
stands for the EHR's machine), and wrk's own CPU use is reported to show it is not the
bottleneck. Workloads use every Synthea fixture patient (the data each service's prefetch
templates return). Reports throughput, p50/p95/p99 at 1, 8 and 32 connections, CPU time per
request, peak RSS per worker, start-up time, and the service/floor ratio, as Markdown with an SVG
chart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import redis
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bench.report import ONE_WORKER_PAIRED, PRECOMPUTED, TWO_WORKERS
from cds_service.fhir_double import FhirDouble
from cds_service.services.registry import shared_id
from deploy.topology import create_database, drop_database, free_port
from deploy.workloads import draft_orders

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "fixtures" / "fhir-r4" / "synthea"
PYTHON = sys.executable
CLI = str(Path(PYTHON).parent / "cds-service")
ISSUER = "https://ehr.bench.example"
REDIS_URL = "redis://127.0.0.1:6379/12"
TENANT = "bench"
PAIRED_ROUNDS = 3
TICKS = os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def descendants(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in children:
                out += descendants(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    startup_s: float
    workers: list[int] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(
    name: str, command: list[str], env: dict[str, str], port: int, core: str, workers: int = 1
) -> Server:
    full_env = {**os.environ, **env}
    process = subprocess.Popen(
        ["taskset", "-c", core, *command],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    startup = wait_ready(f"{base}/healthz" if name != "floor" else f"{base}/openapi.json")
    time.sleep(0.3 if workers == 1 else 1.0)
    pids = descendants(process.pid)
    commands = {p: Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore") for p in pids}
    python_pids = [p for p in pids if "python" in commands[p]]
    # With several workers uvicorn's supervisor spawns them with multiprocessing (beside a
    # resource tracker, which serves no requests).
    spawned = [p for p in python_pids if "multiprocessing.spawn" in commands[p]]
    worker_pids = spawned if workers > 1 else python_pids[:1]
    return Server(name, process, base, startup, worker_pids or python_pids)


# --- the workloads ------------------------------------------------------------------------


def patients() -> list[FhirDouble]:
    return [
        FhirDouble.from_bundle(json.loads(p.read_text()))
        for p in sorted(SYNTHEA.glob("*.json"))
        if not p.name.startswith("_")
    ]


def bodies(work: Path, discovery: list[dict[str, Any]], fhir_base: str) -> dict[str, Path]:
    """One body file per patient per workload; returns workload → list file."""
    templates = {
        (shared_id(s["id"], s["hook"]), s["hook"]): s.get("prefetch", {}) for s in discovery
    }
    lists: dict[str, list[str]] = {}
    for index, local in enumerate(patients()):
        pid = local.resources("Patient")[0]["id"]
        base_context = {"userId": "Practitioner/bench", "patientId": pid}
        cases = {
            "patient-view": ("preventive-care", "patient-view", base_context, True),
            "order-select": (
                "medication-safety",
                "order-select",
                {
                    **base_context,
                    "draftOrders": draft_orders(pid),
                    "selections": ["MedicationRequest/draft-0", "MedicationRequest/draft-1"],
                },
                True,
            ),
            "order-sign": (
                "medication-safety",
                "order-sign",
                {**base_context, "draftOrders": draft_orders(pid)},
                True,
            ),
            "missing-prefetch": ("preventive-care", "patient-view", base_context, False),
        }
        for workload, (service, hook, context, prefetched) in cases.items():
            body: dict[str, Any] = {
                "hook": hook,
                "hookInstance": str(uuid.uuid4()),
                "context": context,
            }
            if prefetched:
                body["prefetch"] = {
                    key: local.get(t.replace("{{context.patientId}}", pid))
                    for key, t in templates[(service, hook)].items()
                }
            else:
                body["fhirServer"] = fhir_base
            path = work / f"{workload}-{index}.json"
            path.write_text(json.dumps(body))
            lists.setdefault(workload, []).append(str(path))
    out = {}
    for workload, files in lists.items():
        listing = work / f"{workload}.list"
        listing.write_text("\n".join(files) + "\n")
        out[workload] = listing
    return out


SERVICE_OF = {
    "patient-view": "preventive-care",
    "order-select": "medication-safety",
    "order-sign": "medication-safety",
    "missing-prefetch": "preventive-care",
}


def tenant_file(work: Path, key: ec.EllipticCurvePrivateKey, fhir_base: str) -> Path:
    """The tenants file of the bench EHR: its issuer, its ES384 public key, its FHIR server."""
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    tenant = {
        "id": TENANT,
        "issuer": ISSUER,
        "jwks": {"keys": [{**jwk, "kid": "bench", "alg": "ES384", "use": "sig"}]},
        "algorithms": ["ES384"],
        "fhir_servers": [fhir_base],
    }
    path = work / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [tenant]}))
    return path


def tokens(key: ec.EllipticCurvePrivateKey, aud: str, count: int, path: Path) -> Path:
    now = int(time.time())
    with path.open("w") as out:
        for _ in range(count):
            claims = {
                "iss": ISSUER,
                "aud": aud,
                "iat": now,
                "exp": now + 600,
                "jti": uuid.uuid4().hex,
            }
            out.write(
                jwt.encode(claims, key, algorithm="ES384", headers={"kid": "bench", "typ": "JWT"})
                + "\n"
            )
    return path


@dataclass
class Result:
    target: str
    workload: str
    connections: int
    rps: float
    p50: float
    p95: float
    p99: float
    errors: int
    cpu_ms_per_request: float
    wrk_cpu_share: float
    worker_cpu_shares: list[float] = field(default_factory=list)


def run_wrk(
    server: Server,
    workload: str,
    listing: Path,
    token_file: Path | None,
    connections: int,
    duration: int,
    script: Path,
) -> Result:
    path = f"/cds-services/{SERVICE_OF[workload]}"
    before = cpu_seconds(descendants(server.process.pid))
    worker_before = [cpu_seconds([pid]) for pid in server.workers]
    command = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"{server.base}{path}",
        "--",
        path,
        str(listing),
        str(token_file) if token_file else "-",
    ]
    started = time.perf_counter()
    process = _Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    # wrk's own CPU time (user + system), from its resource usage once it has exited.
    wrk_cpu = _last_rusage.get(process.pid, 0.0)
    after = cpu_seconds(descendants(server.process.pid))
    worker_used = [cpu_seconds([p]) - b for p, b in zip(server.workers, worker_before, strict=True)]
    match = re.search(r"RESULT (\{.*\})", stdout)
    assert match, stdout + stderr
    data = json.loads(match.group(1))
    requests = max(data["requests"], 1)
    errors = data["status_errors"] + data["connect_errors"] + data["timeouts"]
    return Result(
        server.name,
        workload,
        connections,
        requests / (data["duration_us"] / 1e6),
        data["p50"] / 1000,
        data["p95"] / 1000,
        data["p99"] / 1000,
        errors,
        (after - before) * 1000 / requests,
        wrk_cpu / wall,
        [used / wall for used in worker_used],
    )


_last_rusage: dict[int, float] = {}


class _Popen(subprocess.Popen[str]):
    """Popen that keeps the child's CPU time (os.wait4) when it is reaped."""

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        pid, status, usage = os.wait4(self.pid, wait_flags)
        if pid:
            _last_rusage[pid] = usage.ru_utime + usage.ru_stime
        return pid, status


def precompute(work: Path, env: dict[str, str]) -> None:
    """`cds-service precompute` over the fixture patients, written as Bulk Data NDJSON."""
    export = work / "export"
    export.mkdir()
    files: dict[str, list[str]] = {}
    for path in sorted(SYNTHEA.glob("*.json")):
        if not path.name.startswith("_"):
            for entry in json.loads(path.read_text()).get("entry", []):
                resource = entry["resource"]
                files.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for resource_type, lines in files.items():
        (export / f"{resource_type}.ndjson").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [CLI, "precompute", "--ndjson", str(export), "--tenant", TENANT],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def generated_rules(target: Path, count: int) -> Path:
    """The bundled pack plus `count` generated variants of one of its rules."""
    shutil.copytree(ROOT / "rules", target)
    source = (target / "patient-view" / "hypertension-uncontrolled.yaml").read_text()
    for n in range(count):
        rule_id = f"generated-rule-{n:03d}"
        text = source.replace("id: hypertension-uncontrolled", f"id: {rule_id}").replace(
            "status: active", "status: draft"
        )
        (target / "patient-view" / f"{rule_id}.yaml").write_text(text)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of the same load, not measured, before each measurement (0: none; the "
        "first calls then include the connection pools' and caches' cold start)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="audit/feedback store of the service runs (PostgreSQL as in production; "
        "a fresh database per run, dropped afterwards)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the service and the floor on --workloads, no other runs, no report written "
        "(for profiling while optimising)",
    )
    parser.add_argument(
        "--workloads",
        default="patient-view,order-select,order-sign",
        help="comma-separated workloads to run on the service and the floor "
        "(also missing-prefetch, on the service only)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers of the service measured against the floor (with --quick; a full run "
        "measures 1 and then 2)",
    )
    parser.add_argument(
        "--fhir-no-batch",
        action="store_true",
        help="the 50 ms FHIR server takes no batches (missing prefetch then fetches each query "
        "on its own, as before batches)",
    )
    args = parser.parse_args()
    if args.workers != 1 and not args.quick:
        parser.error("--workers is for --quick runs")
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("needs wrk and taskset (apt-get install wrk util-linux)", file=sys.stderr)
        return 2
    connections = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    script = ROOT / "bench" / "requests.lua"
    key = ec.generate_private_key(ec.SECP384R1())
    fhir_port = free_port()
    fhir_base = f"http://127.0.0.1:{fhir_port}/fhir"
    tenants = tenant_file(work, key, fhir_base)
    redis.Redis.from_url(REDIS_URL).flushdb()
    databases: list[str] = []

    def database_url(port: int) -> str:
        if args.database == "sqlite":
            return f"sqlite:///{work}/cds-{port}.db"
        name = f"cds_bench_{os.getpid()}_{port}"
        databases.append(name)
        return create_database(name)

    def service_env(port: int, **extra: str) -> dict[str, str]:
        return {
            "CDS_AUTH": "required",
            "CDS_TENANTS_FILE": str(tenants),
            "CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CDS_ENV": "development",
            "CDS_DATABASE_URL": database_url(port),
            "CDS_REDIS_URL": REDIS_URL,
            "CDS_LOG_LEVEL": "warning",
            "CDS_RULES_RELOAD_SECONDS": "0",
            **extra,
        }

    fhir = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",  # the EHR's server: beside wrk, not on the service's core
            PYTHON,
            str(ROOT / "bench" / "fhir_server.py"),
            "--port",
            str(fhir_port),
            *(["--no-batch"] if args.fhir_no_batch else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(fhir_port)
    servers: list[Server] = []
    results: list[Result] = []
    startup: dict[str, float] = {}
    rss: dict[str, float] = {}
    try:
        port = free_port()
        service = start(
            "service",
            [CLI, "serve", "--port", str(port), "--workers", str(args.workers)],
            service_env(port),
            port,
            "0" if args.workers == 1 else "0-1",
            workers=args.workers,
        )
        servers.append(service)
        startup["bundled rules (18)"] = service.startup_s
        discovery_token = tokens(key, f"{service.base}/cds-services", 1, work / "d.tok")
        discovery = httpx.get(
            f"{service.base}/cds-services",
            headers={"Authorization": "Bearer " + discovery_token.read_text().strip()},
        ).json()["services"]
        lists = bodies(work, discovery, fhir_base)
        floor_port = free_port()
        floor = start(
            "floor",
            [
                PYTHON,
                "-m",
                "uvicorn",
                "--factory",
                "bench.floor:create_floor",
                "--port",
                str(floor_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            {},
            floor_port,
            "0",
        )
        servers.append(floor)

        def measure(target: Server, workload: str, conns: int, label: str | None = None) -> None:
            token_file = warm_tokens = None
            if target.name != "floor":
                aud = f"{target.base}/cds-services/{SERVICE_OF[workload]}"
                token_file = tokens(key, aud, 4000 * args.duration, work / f"{workload}.tok")
                if args.warmup:
                    warm_tokens = tokens(key, aud, 4000 * args.warmup, work / "warm.tok")
            if args.warmup:  # steady state: pools, connections and caches as a running worker has
                run_wrk(target, workload, lists[workload], warm_tokens, conns, args.warmup, script)
            result = run_wrk(
                target, workload, lists[workload], token_file, conns, args.duration, script
            )
            result.target = label or target.name
            results.append(result)
            print(
                f"{result.target:<28}{workload:<18}c={conns:<3}{result.rps:>8.1f} rps  "
                f"p50 {result.p50:6.1f}  p99 {result.p99:6.1f} ms  errors {result.errors}  "
                f"cpu {result.cpu_ms_per_request:5.2f} ms/req  wrk {result.wrk_cpu_share:.0%}",
                flush=True,
            )

        for workload in args.workloads.split(","):
            for conns in connections:
                measure(service, workload, conns)
                if workload != "missing-prefetch":  # the floor fetches nothing
                    measure(floor, workload, conns)
        if args.quick:
            return 0
        for conns in connections:
            measure(service, "missing-prefetch", conns)
        # Missing prefetch again once the scores are precomputed for every patient, as
        # `cds-service precompute` does from a Bulk Data export: the data only the scores read
        # is then not fetched.
        precompute(work, service_env(port))
        for conns in connections:
            measure(service, "missing-prefetch", conns, PRECOMPUTED)
        rss["service, 1 worker"] = max(peak_rss_mb(p) for p in service.workers)
        rss["floor"] = max(peak_rss_mb(p) for p in floor.workers)

        # One worker against two, measured in alternation (rounds), so that the ratio does not
        # depend on how busy the host was minutes apart; the report takes the medians.
        port = free_port()
        two = start(
            "service",
            [CLI, "serve", "--port", str(port), "--workers", "2"],
            service_env(port),
            port,
            "0-1",
            workers=2,
        )
        servers.append(two)
        for _ in range(PAIRED_ROUNDS):
            measure(service, "patient-view", 8, ONE_WORKER_PAIRED)
            measure(two, "patient-view", 8, TWO_WORKERS)
        rss["service, 2 workers (each)"] = max(peak_rss_mb(p) for p in two.workers)
        for server in (two, service):
            server.stop()
            servers.remove(server)

        port = free_port()
        uncached = start(
            "service",
            [CLI, "serve", "--port", str(port), "--workers", "1"],
            service_env(port, CDS_SCORE_CACHE_ENABLED="false"),
            port,
            "0",
        )
        servers.append(uncached)
        measure(uncached, "patient-view", 8, "service, scores uncached")
        uncached.stop()
        servers.remove(uncached)

        many = generated_rules(work / "rules-200", 200)
        port = free_port()
        big = start(
            "service",
            [CLI, "serve", "--port", str(port), "--rules", str(many)],
            service_env(port),
            port,
            "0",
        )
        startup["bundled + 200 generated rules"] = big.startup_s
        big.stop()
    finally:
        for server in servers:
            server.stop()
        fhir.terminate()
        for name in databases:
            drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    write_report(args.out, results, startup, rss, args.duration, args.database, args.warmup)
    print(f"\nwrote {args.out}")
    return 0


def write_report(
    out: Path,
    results: list[Result],
    startup: dict[str, float],
    rss: dict[str, float],
    duration: int,
    database: str,
    warmup: int = 0,
) -> None:
    from bench.report import render

    out.parent.mkdir(parents=True, exist_ok=True)
    chart_path = out.parent / "benchmarks.svg"
    out.write_text(render(results, startup, rss, duration, chart_path, database, warmup))
    (out.parent / "benchmarks.json").write_text(
        json.dumps(
            {
                "database": database,
                "results": [r.__dict__ for r in results],
                "startup_s": startup,
                "rss_mb": rss,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
