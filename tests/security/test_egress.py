"""The FHIR client's egress guard: the resolved address is checked and the connection pinned to
it. Every test uses a stub resolver and a stub transport: no packet leaves this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.security.egress import EgressRefused, GuardedTransport

EHR = "ehr.example.org"


def stub_resolver(table: dict[str, list[str]]) -> Callable[[str, int], Any]:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("name not known")
        return table[host]

    return resolve


class Seen:
    """A stub FHIR server: records what reached it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})


def fetch(url: str, table: dict[str, list[str]]) -> tuple[Seen, list[str], Any]:
    seen = Seen()
    refusals: list[str] = []
    transport = GuardedTransport(
        lambda: httpx.MockTransport(seen.handle),
        resolver=stub_resolver(table),
        on_refusal=refusals.append,
    )

    async def run() -> Any:
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                return await client.get(url)
            except httpx.HTTPError as exc:
                return exc

    return seen, refusals, asyncio.run(run())


def test_the_connection_goes_to_the_checked_address_with_the_name_kept() -> None:
    seen, refusals, response = fetch(f"https://{EHR}/fhir/Patient/p1", {EHR: ["203.0.113.7"]})
    assert response.status_code == 200 and refusals == []
    [request] = seen.requests
    assert request.url.host == "203.0.113.7"  # pinned: no second resolution can move it
    assert request.url.path == "/fhir/Patient/p1"
    assert request.headers["host"] == EHR
    assert request.extensions["sni_hostname"] == EHR  # TLS checks the certificate of the name


@pytest.mark.parametrize(
    ("url", "table", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", {}, "cloud metadata address"),
        ("http://metadata.google.internal/computeMetadata/v1/", {}, "cloud metadata name"),
        ("http://[fe80::1]/fhir/Patient", {}, "link-local address"),
        ("http://[fd00:ec2::254]/latest", {}, "cloud metadata address"),
        (f"https://{EHR}/fhir/Patient", {EHR: ["169.254.10.20"]}, "link-local address"),
        (f"https://{EHR}/fhir/Patient", {EHR: ["203.0.113.7", "169.254.1.1"]}, "link-local"),
        (f"https://{EHR}/fhir/Patient", {EHR: ["::ffff:169.254.169.254"]}, "cloud metadata"),
        (f"https://{EHR}/fhir/Patient", {EHR: ["0.0.0.0"]}, "unspecified address"),
        (f"https://{EHR}/fhir/Patient", {EHR: ["224.0.0.1"]}, "multicast address"),
    ],
)
def test_never_contacted_whatever_the_configuration(
    url: str, table: dict[str, list[str]], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen, refusals, outcome = fetch(url, table)
    assert isinstance(outcome, EgressRefused)
    assert seen.requests == []
    assert len(refusals) == 1 and refusals[0].startswith(reason)
    assert reason in caplog.text


def test_private_and_loopback_addresses_are_reached_when_the_url_was_allowed() -> None:
    # `ssrf.fetch_refusal` only lets through a tenant's listed servers (any URL in development).
    for address in ("10.1.2.3", "127.0.0.1", "::1"):
        seen, refusals, response = fetch(f"https://{EHR}/fhir/Patient/p1", {EHR: [address]})
        assert response.status_code == 200 and refusals == []
        assert seen.requests[0].url.host == address


def test_a_name_that_does_not_resolve_fails_the_fetch() -> None:
    seen, refusals, outcome = fetch("https://nowhere.example.org/fhir/Patient", {})
    assert isinstance(outcome, httpx.ConnectError) and seen.requests == [] and refusals == []


def test_a_checked_address_is_kept_for_a_while_and_failures_are_not() -> None:
    asked: list[str] = []
    table: dict[str, list[str]] = {EHR: ["169.254.1.1"]}  # first, a refused address

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError("name not known")
        return table[host]

    seen = Seen()
    transport = GuardedTransport(
        lambda: httpx.MockTransport(seen.handle), resolver=resolve, resolution_seconds=0.2
    )

    async def run() -> list[Any]:
        outcomes: list[Any] = []
        async with httpx.AsyncClient(transport=transport) as client:

            async def get() -> None:
                try:
                    outcomes.append(await client.get(f"https://{EHR}/fhir/Patient/p1"))
                except httpx.HTTPError as exc:
                    outcomes.append(exc)

            await get()  # refused: not remembered
            table[EHR] = ["203.0.113.7"]
            await get()
            await get()  # the checked address, without asking again
            await get()
            table[EHR] = ["203.0.113.8"]  # the name moves
            await get()  # still the checked address for a while
            await asyncio.sleep(0.3)
            await get()  # asked again: the new address
            del table[EHR]
            await asyncio.sleep(0.3)
            await get()  # no longer resolves: not remembered either
            table[EHR] = ["203.0.113.9"]
            await get()
        return outcomes

    outcomes = asyncio.run(run())
    assert isinstance(outcomes[0], EgressRefused)
    assert isinstance(outcomes[6], httpx.ConnectError)
    assert [r.url.host for r in seen.requests] == [
        *["203.0.113.7"] * 4,
        "203.0.113.8",
        "203.0.113.9",
    ]
    assert len(asked) == 5  # refused, resolved, moved, unknown, resolved


def test_each_name_has_its_own_pool() -> None:
    made: list[httpx.MockTransport] = []

    def pool() -> httpx.MockTransport:
        made.append(httpx.MockTransport(lambda r: httpx.Response(200, json={})))
        return made[-1]

    table = {"a.example.org": ["203.0.113.7"], "b.example.org": ["203.0.113.7"]}
    transport = GuardedTransport(pool, resolver=stub_resolver(table))

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            for host in ("a.example.org", "b.example.org", "a.example.org"):
                await client.get(f"https://{host}/fhir/metadata")

    asyncio.run(run())
    assert len(made) == 2  # one connection pool per name, though both share an address


def test_a_hook_call_answers_412_at_once_and_counts_the_refusal(tmp_path: Path) -> None:
    """Through the app: the EHR's listed server resolves to the metadata address; the call
    needs data from it, so 412 naming the key, the refusal counted by reason."""
    seen = Seen()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/f.db", env="development")
    app = create_app(
        settings,
        fhir_transport=httpx.MockTransport(seen.handle),
        fhir_resolver=stub_resolver({EHR: ["169.254.169.254"]}),
    )
    body = {
        "hook": "encounter-start",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": f"https://{EHR}/fhir",
        "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
    }
    with TestClient(app) as client:
        response = client.post("/cds-services/allergy-documentation", json=body)
        metrics = client.get("/metrics").text
    assert response.status_code == 412, response.text
    assert "prefetch.allergies" in response.text and "EgressRefused" in response.text
    assert seen.requests == []
    assert 'cds_fetch_refusals_total{reason="cloud metadata address"}' in metrics
