"""Soak: a moderate steady load against the replica topology, reporting errors and RSS over time.

By default it starts its own topology (deploy/topology.py: 2 replicas behind nginx, PostgreSQL
database `cds_soak`, dropped at the end, Redis database 13, flushed) with a freshly generated EHR
key, then runs `--clients` concurrent clients (default 10) for `--seconds` (default 600), rotating
patient-view (preventive-care), order-select and order-sign (medication-safety) calls over every
Synthea fixture patient with all prefetch sent, each call with a fresh JWT.

Every `--interval` seconds (30) it prints elapsed time, requests, errors (non-200 or transport
errors), p50/p99 latency and each replica's RSS; at the end a summary (errors, target zero; RSS
first → last per replica, target flat). Exit status 1 when any call failed.

    python deploy/soak.py --seconds 60
    python deploy/soak.py --url http://127.0.0.1:8080 --key ehr.pem --issuer ISS --kid KID \\
        --pids 1234,1235          # against a topology already running
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import redis
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds_service.fhir_double import FhirDouble
from cds_service.services.registry import shared_id
from deploy.topology import Topology, drop_database, rss_mb
from deploy.workloads import draft_orders

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "fixtures" / "fhir-r4" / "synthea"
ISSUER = "https://ehr.soak.example.org"
KID = "soak-1"
CASES = {
    "patient-view": "preventive-care",
    "order-select": "medication-safety",
    "order-sign": "medication-safety",
}


def build_bodies(discovery: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(service path, body) for every patient and hook, prefetch filled from the templates."""
    templates = {
        (shared_id(s["id"], s["hook"]), s["hook"]): s.get("prefetch", {}) for s in discovery
    }
    out: list[tuple[str, dict[str, Any]]] = []
    for file in sorted(SYNTHEA.glob("*.json")):
        if file.name.startswith("_"):
            continue
        local = FhirDouble.from_bundle(json.loads(file.read_text()))
        pid = local.resources("Patient")[0]["id"]
        base = {"userId": "Practitioner/soak", "patientId": pid}
        contexts = {
            "patient-view": base,
            "order-select": {
                **base,
                "draftOrders": draft_orders(pid),
                "selections": ["MedicationRequest/draft-0", "MedicationRequest/draft-1"],
            },
            "order-sign": {**base, "draftOrders": draft_orders(pid)},
        }
        for hook, service in CASES.items():
            prefetch = {
                key: local.get(template.replace("{{context.patientId}}", pid))
                for key, template in templates[(service, hook)].items()
            }
            body = {"hook": hook, "context": contexts[hook], "prefetch": prefetch}
            out.append((f"/cds-services/{service}", body))
    return out


class Signer:
    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, kid: str, base: str) -> None:
        self.key, self.issuer, self.kid, self.base = key, issuer, kid, base

    def headers(self, path: str) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.base + path,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self.key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT"}
        )
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []  # since the last report
        self.all_latencies: list[float] = []
        self.error_kinds: dict[str, int] = {}

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(seconds)
            if error is not None:
                self.errors += 1
                self.error_kinds[error] = self.error_kinds.get(error, 0) + 1

    def take(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
            self.all_latencies += out
            return out


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def client(
    base: str,
    signer: Signer,
    payloads: list[tuple[str, bytes]],
    start: int,
    stop: threading.Event,
    stats: Stats,
) -> None:
    rotation = itertools.islice(itertools.cycle(payloads), start, None)
    with httpx.Client(timeout=30) as http:
        for path, body in rotation:
            if stop.is_set():
                return
            # a fresh hookInstance per call, without re-serialising the (large) body
            content = body.replace(b"__HOOK_INSTANCE__", str(uuid.uuid4()).encode(), 1)
            began = time.perf_counter()
            error: str | None = None
            try:
                response = http.post(base + path, content=content, headers=signer.headers(path))
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            stats.record(time.perf_counter() - began, error)


def run(
    base: str,
    signer: Signer,
    pids: list[int],
    *,
    clients: int,
    seconds: float,
    interval: float,
) -> int:
    discovery = httpx.get(base + "/cds-services", headers=signer.headers("/cds-services"))
    discovery.raise_for_status()
    payloads = [
        (path, json.dumps({**body, "hookInstance": "__HOOK_INSTANCE__"}).encode())
        for path, body in build_bodies(discovery.json()["services"])
    ]
    print(
        f"soak: {clients} clients for {seconds:.0f} s against {base}, {len(payloads)} bodies, "
        f"replica pids {pids}",
        flush=True,
    )
    stats = Stats()
    stop = threading.Event()
    rss_idle = [rss_mb(pid) for pid in pids]
    rss_first: list[float] = []
    threads = [
        threading.Thread(
            target=client,
            args=(base, signer, payloads, i * len(payloads) // clients, stop, stats),
            daemon=True,
        )
        for i in range(clients)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    rss_last = rss_idle
    next_report = began + interval
    end = began + seconds
    while True:
        now = time.monotonic()
        if now >= min(next_report, end):
            window = stats.take()
            rss_last = [rss_mb(pid) for pid in pids]
            rss_first = rss_first or rss_last
            rss = " ".join(f"r{i}={mb:.0f}MB" for i, mb in enumerate(rss_last))
            print(
                f"t={now - began:5.0f}s requests={stats.requests:6d} errors={stats.errors:4d} "
                f"p50={percentile(window, 0.50):6.0f}ms p99={percentile(window, 0.99):6.0f}ms "
                f"rss {rss}",
                flush=True,
            )
            next_report += interval
            if now >= end:
                break
        time.sleep(max(0.0, min(next_report, end) - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    stats.take()
    elapsed = time.monotonic() - began
    print("summary:", flush=True)
    print(
        f"  requests {stats.requests} in {elapsed:.0f} s ({stats.requests / elapsed:.1f}/s), "
        f"p50 {percentile(stats.all_latencies, 0.5):.0f} ms, "
        f"p99 {percentile(stats.all_latencies, 0.99):.0f} ms",
        flush=True,
    )
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(stats.error_kinds.items())) or "none"
    print(f"  errors {stats.errors} (target 0): {kinds}", flush=True)
    for i, (idle, first, last) in enumerate(zip(rss_idle, rss_first, rss_last, strict=True)):
        print(
            f"  replica {i} RSS idle {idle:.0f} MB; first report {first:.0f} MB -> last "
            f"{last:.0f} MB ({last - first:+.0f} MB)",
            flush=True,
        )
    return 1 if stats.errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--replicas", type=int, default=2, help="when starting our own topology")
    parser.add_argument("--url", help="a running topology's nginx URL (its CDS_PUBLIC_BASE_URL)")
    parser.add_argument("--key", help="with --url: the EHR's EC P-384 private key (PEM)")
    parser.add_argument("--issuer", default=ISSUER, help="with --url: the tenant's issuer")
    parser.add_argument("--kid", default=KID, help="with --url: the key's kid")
    parser.add_argument("--pids", default="", help="with --url: replica pids, comma-separated")
    args = parser.parse_args(argv)
    options = {"clients": args.clients, "seconds": args.seconds, "interval": args.interval}

    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            parser.error("--key must be an EC private key")
        pids = [int(p) for p in args.pids.split(",") if p.strip()]
        base = args.url.rstrip("/")
        return run(base, Signer(key, args.issuer, args.kid, base), pids, **options)

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    tenant = {
        "id": "soak",
        "issuer": ISSUER,
        "jwks": {"keys": [{**jwk, "kid": KID, "alg": "ES384", "use": "sig"}]},
        "algorithms": ["ES384"],
    }
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cds-soak-") as work:
        tenants = Path(work) / "tenants.yaml"
        tenants.write_text(yaml.safe_dump({"tenants": [tenant]}))
        database = f"cds_soak_{secrets.token_hex(3)}"
        topology = Topology(tenants, replicas=args.replicas, database=database, redis_db=13)
        store = redis.Redis.from_url(topology.redis_url)
        store.flushdb()
        try:
            with topology:
                signer = Signer(key, ISSUER, KID, topology.url)
                return run(topology.url, signer, topology.pids(), **options)
        finally:
            store.flushdb()
            store.close()
            drop_database(database)


if __name__ == "__main__":
    sys.exit(main())
