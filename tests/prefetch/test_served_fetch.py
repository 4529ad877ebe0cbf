"""Missing prefetch as production fetches it: `cds-service serve` (uvicorn on uvloop, the FHIR
client's own HTTP/1.1 transport, the egress guard) calling FHIR servers that listen on loopback,
one taking batches and one not, with calls in flight together. Each call must answer the cards
the same call answers when the EHR sends the prefetch itself.

The FHIR servers are `FhirDouble`s over Synthea records moved into the present (so the rules'
look-back windows hold data and cards fire), behind uvicorn in a thread of this process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from bench.rules_engine import context_for, last_encounter
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.templates import render_template
from cds_service.wire.request import HookRequest
from deploy.topology import free_port
from tests.conftest import FIXTURES
from tests.present import in_the_present
from tests.serving import serving

SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
PATIENTS = (
    "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json",
    "Seth_Lakin_55940999-fd98-4922-b9bc-a6bf0c1855ed.json",
    "Abram_Lemke_6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2.json",
)
HOOKS = ("patient-view", "order-select", "order-sign")


def _asgi(double: FhirDouble, origin: str) -> Any:
    """The double as an ASGI app (what the EHR's FHIR server answers, over real HTTP)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode("ascii")
        url = f"{origin}{scope['raw_path'].decode('ascii')}"
        if query and "?" not in url:
            url += "?" + query
        answer = double.handle(httpx.Request(scope["method"], url, content=body))
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [(b"content-type", b"application/fhir+json")],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})

    return app


@dataclass
class FhirServer:
    origin: str
    double: FhirDouble
    server: uvicorn.Server
    thread: threading.Thread


def _start(resources: list[dict[str, Any]], batch: bool) -> FhirServer:
    port = free_port()
    double = FhirDouble(resources, base_url=f"http://127.0.0.1:{port}/fhir", batch=batch)
    config = uvicorn.Config(
        _asgi(double, f"http://127.0.0.1:{port}"),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the FHIR server did not start"
        time.sleep(0.02)
    return FhirServer(f"http://127.0.0.1:{port}", double, server, thread)


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return [in_the_present(json.loads((SYNTHEA / name).read_text())) for name in PATIENTS]


@pytest.fixture(scope="module")
def fhir_servers(records: list[dict[str, Any]]) -> Iterator[dict[str, FhirServer]]:
    resources = [e["resource"] for record in records for e in record["entry"]]
    servers = {"batch": _start(resources, batch=True), "no-batch": _start(resources, batch=False)}
    try:
        yield servers
    finally:
        for running in servers.values():
            running.server.should_exit = True
        for running in servers.values():
            running.thread.join(timeout=10)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("served-fetch")
    with serving(
        tmp,
        CDS_AUTH="disabled",
        CDS_RULES_RELOAD_SECONDS="0",
        CDS_PREFETCH_DEADLINE_SECONDS="10",
        CDS_FHIR_MAX_CONNECTIONS="4",  # fewer connections than calls in flight: they queue
    ) as base:
        yield base
    log = (tmp / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def _cards(answer: httpx.Response) -> list[tuple[str, str, str]]:
    assert answer.status_code == 200, answer.text[:500]
    return sorted(
        (card["summary"], card["indicator"], card.get("detail", ""))
        for card in answer.json()["cards"]
    )


def test_fetched_prefetch_answers_as_sent_prefetch(
    service: str, fhir_servers: dict[str, FhirServer], records: list[dict[str, Any]]
) -> None:
    with httpx.Client(base_url=service, timeout=30) as http:
        discovery = http.get("/cds-services").json()["services"]
    now = datetime.now(UTC)
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (path, context, prefetch)
    for record in records:
        local = FhirDouble.from_bundle(record)
        patient = local.resources("Patient")[0]["id"]
        encounter, _ = last_encounter(local)
        for entry in discovery:
            if entry["hook"] not in HOOKS or not entry.get("prefetch"):
                continue
            context = context_for(entry["hook"], patient, encounter, now)
            request = HookRequest.model_validate(
                {"hook": entry["hook"], "hookInstance": str(uuid.uuid4()), "context": context}
            )
            prefetch = {}
            for key, template in entry["prefetch"].items():
                url = render_template(template, request.context)
                if url is not None:
                    prefetch[key] = local.get(url)
            calls.append((f"/cds-services/{entry['id']}", context, prefetch))
    assert len(calls) >= 3 * 6

    async def answer_all(fhir_server: str | None) -> list[list[tuple[str, str, str]]]:
        slots = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=service, timeout=60) as http:

            async def one(
                path: str, context: dict[str, Any], prefetch: dict[str, Any]
            ) -> list[tuple[str, str, str]]:
                body: dict[str, Any] = {
                    "hook": next(e["hook"] for e in discovery if path.endswith("/" + e["id"])),
                    "hookInstance": str(uuid.uuid4()),
                    "context": context,
                }
                if fhir_server is None:
                    body["prefetch"] = prefetch
                else:
                    body["fhirServer"] = fhir_server
                async with slots:
                    return _cards(await http.post(path, json=body))

            return list(await asyncio.gather(*(one(*call) for call in calls)))

    sent = asyncio.run(answer_all(None))
    assert sum(len(cards) for cards in sent) >= 5, "too few cards to compare"
    for kind, running in fhir_servers.items():
        fetched = asyncio.run(answer_all(f"{running.origin}/fhir"))
        assert fetched == sent, kind
    batched = fhir_servers["batch"].double
    assert batched.batches, "the server that takes batches got none"
    assert len(batched.batches) >= len(calls) // 2
    one_by_one = fhir_servers["no-batch"].double
    assert not one_by_one.batches
    assert len(one_by_one.requests) > len(calls) * 3  # each query on its own
