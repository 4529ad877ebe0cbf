"""Bulk Data $export against a fake FHIR server: kick-off, polling, download, errors, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from cds_service.bulk.auth import TokenSource
from cds_service.bulk.errors import BulkError
from cds_service.bulk.export import cancel, export_resources, kick_off, poll
from cds_service.bulk.ndjson import NdjsonItem, NdjsonProblem, NdjsonResource
from cds_service.bulk.progress import ExportProgress
from tests.bulk.fakes import (
    BASE,
    CLIENT_ID,
    MOCKS,
    SAMPLE_10,
    SCOPE,
    STATUS_URL,
    FakeFhirServer,
    fixture_lines,
    in_progress,
    json_response,
    outcome,
    signing_key,
)

PATIENT_LINES = fixture_lines(SAMPLE_10 / "Patient.000.ndjson", 4)
BAD_LINE = fixture_lines(MOCKS / "bad-ndjson" / "sample.2.ndjson")[1]  # {"a":10,... broken!!! }
CONDITION_LINES = fixture_lines(SAMPLE_10 / "Condition.000.ndjson", 5)
ERROR_FILE = b"".join(
    httpx.Response(200, json=o).content + b"\n"
    for o in (
        outcome("Patient 123 could not be exported", code="processing"),
        outcome("Observation search timed out", code="timeout", severity="warning"),
    )
)


def standard_files() -> dict[str, bytes]:
    patients = b"".join(PATIENT_LINES[:2]) + BAD_LINE + b"\n" + b"".join(PATIENT_LINES[2:])
    return {"Patient.000.ndjson": patients, "Condition.000.ndjson": b"".join(CONDITION_LINES)}


def make_server(kind: str = "rsa", **kwargs: Any) -> FakeFhirServer:
    kwargs.setdefault("files", standard_files())
    return FakeFhirServer(signing_key(kind), **kwargs)


def token_source(client: httpx.AsyncClient, kind: str = "rsa") -> TokenSource:
    return TokenSource(
        client, client_id=CLIENT_ID, key=signing_key(kind), scope=SCOPE, fhir_base=BASE
    )


async def collect(
    server: FakeFhirServer,
    events: list[ExportProgress] | None = None,
    kind: str = "rsa",
    **kwargs: Any,
) -> list[NdjsonItem]:
    async with server.client() as client:
        token = token_source(client, kind)
        items = export_resources(
            client,
            BASE,
            token=token,
            on_progress=(events.append if events is not None else None),
            **kwargs,
        )
        async with aclosing(items) as stream:
            return [item async for item in stream]


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_group_export_end_to_end(kind: str) -> None:
    server = make_server(kind, errors={"errors.ndjson": ERROR_FILE})
    events: list[ExportProgress] = []
    items = asyncio.run(
        collect(
            server,
            events,
            kind,
            group_id="sample-10",
            types=["Patient", "Condition"],
            since="2024-01-01T00:00:00+02:00",
        )
    )

    # kick-off: the right URL, headers and parameters, with the bearer token
    kick = next(r for r in server.requests if "$export" in r.url.path)
    assert kick.method == "GET" and kick.url.path == "/r4/Group/sample-10/$export"
    assert kick.headers["Accept"] == "application/fhir+json"
    assert kick.headers["Prefer"] == "respond-async"
    assert server.kick_off_params == {
        "_type": ["Patient,Condition"],
        "_since": ["2024-01-01T00:00:00+02:00"],
    }
    # polled three times (202, 202, 200); every request after the token one carries the token
    assert server.status_calls == 3
    protected = [
        r
        for r in server.requests
        if r.url.host == "fhir.example.org" and "well-known" not in r.url.path
    ]
    assert len(protected) == 8  # kick-off, three polls, three files, the delete
    assert all(
        r.headers["Authorization"].removeprefix("Bearer ") in server.issued for r in protected
    )
    assert len(server.assertions) == 1  # one token for the whole export

    resources = [i for i in items if isinstance(i, NdjsonResource)]
    problems = [i for i in items if isinstance(i, NdjsonProblem)]
    patient_source = f"{BASE}/files/Patient.000.ndjson"
    assert [(r.resource_type, r.line) for r in resources if r.source == patient_source] == [
        ("Patient", 1),
        ("Patient", 2),
        ("Patient", 5),  # line 3 is the broken one, line 4 blank
        ("Patient", 6),
    ]
    assert [r.resource["id"] for r in resources if r.resource_type == "Patient"] == [
        httpx.Response(200, content=line).json()["id"] for line in PATIENT_LINES
    ]
    assert len([r for r in resources if r.resource_type == "Condition"]) == 5
    bad, first_outcome, second_outcome = problems
    assert (bad.source, bad.line, bad.kind) == (patient_source, 3, "line")
    assert bad.reason.startswith("invalid JSON")
    assert (first_outcome.kind, first_outcome.line) == ("outcome", 1)
    assert first_outcome.reason == "error/processing: Patient 123 could not be exported"
    assert (
        first_outcome.outcome is not None
        and first_outcome.outcome["resourceType"] == "OperationOutcome"
    )
    assert second_outcome.reason == "warning/timeout: Observation search timed out"
    assert second_outcome.source == f"{BASE}/files/errors.ndjson"

    stages = [e.stage for e in events]
    assert stages == [
        "kick-off",
        "in-progress",
        "in-progress",
        "complete",
        "download",
        "download",
        "download",
        "deleted",
    ]
    waiting = [e for e in events if e.stage == "in-progress"]
    assert [(e.message, e.wait) for e in waiting] == [
        ("Collecting Patient (10%)", 0.0),
        ("Collecting Condition (60%)", 0.0),
    ]
    # the finished export was deleted on the server
    assert server.deletes == 1


def test_files_are_fetched_without_the_token_when_not_required() -> None:
    server = make_server(requires_access_token=False)
    items = asyncio.run(collect(server))
    assert len([i for i in items if isinstance(i, NdjsonResource)]) == 9
    downloads = [r for r in server.requests if "/files/" in r.url.path]
    assert len(downloads) == 2
    assert all("Authorization" not in r.headers for r in downloads)
    assert all(r.headers["Accept"] == "application/fhir+ndjson" for r in downloads)
    status = [r for r in server.requests if r.url.path.endswith("/bulkstatus/42")]
    assert len(status) == 4  # three polls and the delete
    assert all("Authorization" in r.headers for r in status)


def test_a_patient_level_export_without_parameters() -> None:
    server = make_server()
    items = asyncio.run(collect(server, delete_when_done=False))
    assert items
    kick = next(r for r in server.requests if "$export" in r.url.path)
    assert kick.url.path == "/r4/Patient/$export" and kick.url.query == b""
    assert server.deletes == 0


def test_a_failed_export_raises_with_the_server_diagnostics() -> None:
    def failed(request: httpx.Request) -> httpx.Response:
        return json_response(500, outcome("Export job crashed: out of disk space"))

    server = make_server(status_steps=[in_progress("Starting"), failed])
    with pytest.raises(BulkError) as caught:
        asyncio.run(collect(server))
    message = str(caught.value)
    assert "HTTP 500" in message and "Export job crashed: out of disk space" in message
    assert caught.value.server_status == 500
    assert not any(token in message for token in server.issued)
    assert server.deletes == 1  # cancelled on the way out


def test_a_refused_kick_off_raises() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        body = outcome("Group sample-10 is not visible to this client", code="forbidden")
        return json_response(403, body)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            await kick_off(client, BASE, group_id="sample-10")

    with pytest.raises(BulkError, match=r"HTTP 403.*not visible"):
        asyncio.run(run())


def test_transient_errors_and_429_are_retried() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return json_response(429, outcome("slow down", code="throttled"), {"Retry-After": "0"})

    def transient(request: httpx.Request) -> httpx.Response:
        return json_response(
            503, outcome("database restarting", code="transient"), {"Retry-After": "0"}
        )

    server = make_server(status_steps=[busy, transient, in_progress("90%")])
    server.status_steps.append(server.complete)
    events: list[ExportProgress] = []
    items = asyncio.run(collect(server, events))
    assert items and server.status_calls == 4
    messages = [e.message for e in events if e.stage == "in-progress"]
    assert messages[0] == "the server asks to poll less often (HTTP 429)"
    assert messages[1].startswith("transient server error (HTTP 503)")


def test_a_revoked_token_is_replaced_once() -> None:
    server = make_server()
    original = server.status_steps[0]

    def revoke(request: httpx.Request) -> httpx.Response:
        server.issued.clear()  # the next request with the old token gets 401
        return original(request)  # type: ignore[return-value]

    server.status_steps[0] = revoke
    items = asyncio.run(collect(server))
    assert len([i for i in items if isinstance(i, NdjsonResource)]) == 9
    assert len(server.assertions) == 2


def test_the_export_is_cancelled_when_the_consumer_stops_early() -> None:
    server = make_server()
    events: list[ExportProgress] = []

    async def first_resource() -> NdjsonItem:
        async with server.client() as client:
            stream = export_resources(
                client, BASE, token=token_source(client), on_progress=events.append
            )
            async with aclosing(stream) as items:
                async for item in items:
                    return item
        raise AssertionError("nothing yielded")

    item = asyncio.run(first_resource())
    assert isinstance(item, NdjsonResource) and item.line == 1
    assert server.deletes == 1
    delete = next(r for r in server.requests if r.method == "DELETE")
    assert str(delete.url) == STATUS_URL and delete.headers["Authorization"].startswith("Bearer ")
    # only the first file was requested
    assert [r.url.path for r in server.requests if "/files/" in r.url.path] == [
        "/r4/files/Patient.000.ndjson"
    ]
    assert events[-1].stage == "cancelled"


def test_the_export_is_cancelled_when_the_task_is_cancelled() -> None:
    polling = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        polling.set()
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    server = make_server(status_steps=[hang])

    async def run() -> None:
        async with server.client() as client:

            async def consume() -> None:
                async with aclosing(
                    export_resources(client, BASE, token=token_source(client))
                ) as items:
                    async for _ in items:
                        pass

            task = asyncio.create_task(consume())
            await polling.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert server.deletes == 1


def test_the_token_is_not_sent_to_another_origin() -> None:
    server = make_server(
        manifest_extra={
            "output": [
                {
                    "type": "Patient",
                    "url": "https://files.elsewhere.example/p.ndjson?X-Amz-Signature=abc",
                }
            ]
        }
    )
    items = asyncio.run(collect(server))
    (problem,) = items
    assert isinstance(problem, NdjsonProblem) and problem.kind == "file"
    assert "not on the FHIR server's origin" in problem.reason
    assert "abc" not in problem.source and "REDACTED" in problem.source
    assert not any(r.url.host == "files.elsewhere.example" for r in server.requests)


def test_a_missing_file_and_a_broken_download_are_reported_and_the_rest_goes_on() -> None:
    server = make_server()

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"".join(PATIENT_LINES[:2])
            raise httpx.ReadError("connection reset")

    handle = server.handle

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("Patient.000.ndjson"):
            server.requests.append(request)
            return httpx.Response(200, stream=Broken())
        return await handle(request)

    server.handle = handler  # type: ignore[method-assign]
    server.manifest_extra = {
        "output": [
            {"type": "Patient", "url": f"{BASE}/files/Patient.000.ndjson"},
            {"type": "Observation", "url": "/r4/files/missing.ndjson"},  # relative: resolved
            {"type": "Condition", "url": f"{BASE}/files/Condition.000.ndjson"},
        ]
    }
    items = asyncio.run(collect(server))
    problems = [
        (i.source.rsplit("/", 1)[1], i.line, i.reason)
        for i in items
        if isinstance(i, NdjsonProblem)
    ]
    assert problems == [
        ("Patient.000.ndjson", 3, "download interrupted (ReadError)"),
        ("missing.ndjson", 0, "download failed (HTTP 404)"),
    ]
    assert len([i for i in items if isinstance(i, NdjsonResource)]) == 2 + 5


def test_a_paged_manifest_is_followed() -> None:
    server = make_server()
    page_two = {
        "requiresAccessToken": True,
        "output": [{"type": "Condition", "url": f"{BASE}/files/Condition.000.ndjson"}],
        "link": [{"relation": "next", "url": "#pending"}],
    }
    server.manifest_extra = {
        "output": [{"type": "Patient", "url": f"{BASE}/files/Patient.000.ndjson"}],
        "link": [{"relation": "next", "url": f"{BASE}/files/manifest-2.json"}],
    }
    server.files["manifest-2.json"] = httpx.Response(200, json=page_two).content
    events: list[ExportProgress] = []
    items = asyncio.run(collect(server, events))
    types = [i.resource_type for i in items if isinstance(i, NdjsonResource)]
    assert types == ["Patient"] * 4 + ["Condition"] * 5
    assert "page" in [e.stage for e in events]


def test_polling_backs_off_without_retry_after_and_gives_up_at_the_timeout() -> None:
    waits: list[float] = []
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, headers={"X-Progress": "still working"})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await poll(client, STATUS_URL, timeout=200, sleep=fake_sleep, clock=lambda: now[0])

    with pytest.raises(BulkError, match="did not finish within 200 s"):
        asyncio.run(run())
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert sum(waits) == pytest.approx(200)


def test_polling_honours_an_http_date_retry_after() -> None:
    waits: list[float] = []
    answers = iter(
        [
            httpx.Response(
                202, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
            ),  # past: 0
            httpx.Response(202, headers={"Retry-After": "120"}),
            json_response(200, {"requiresAccessToken": False, "output": []}),
        ]
    )

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> None:
        transport = httpx.MockTransport(lambda request: next(answers))
        async with httpx.AsyncClient(transport=transport) as client:
            manifest = await poll(client, STATUS_URL, sleep=fake_sleep)
            assert manifest.output == () and manifest.source_url == STATUS_URL

    asyncio.run(run())
    assert waits == [0.0, 120.0]


def test_network_failures_while_polling_are_retried_a_few_times() -> None:
    calls = [0]

    def flaky(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        raise httpx.ConnectError("refused", request=request)

    async def no_sleep(seconds: float) -> None:
        return None

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(flaky)) as client:
            await poll(client, STATUS_URL, sleep=no_sleep)

    with pytest.raises(BulkError, match="ConnectError"):
        asyncio.run(run())
    assert calls[0] == 3


def test_cancel_reports_whether_the_server_knew_the_export() -> None:
    answers = iter(
        [
            httpx.Response(202),
            json_response(404, outcome("unknown job", code="not-found")),
            json_response(500, outcome("boom")),
        ]
    )

    async def run() -> list[bool]:
        transport = httpx.MockTransport(lambda request: next(answers))
        async with httpx.AsyncClient(transport=transport) as client:
            results = [await cancel(client, STATUS_URL), await cancel(client, STATUS_URL)]
            with pytest.raises(BulkError, match="boom"):
                await cancel(client, STATUS_URL)
            return results

    assert asyncio.run(run()) == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_id": "../Patient"}, "not a valid FHIR id"),
        ({"types": ["Patient", "bad type"]}, "not a FHIR resource type"),
        ({"since": "2024-01-01"}, "needs a time zone"),
        ({"since": "yesterday"}, "not a FHIR instant"),
    ],
)
def test_kick_off_parameters_are_checked(kwargs: dict[str, Any], message: str) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(500))
        ) as client:
            await kick_off(client, BASE, **kwargs)

    with pytest.raises(BulkError, match=message):
        asyncio.run(run())


def test_a_status_url_on_another_origin_gets_no_token() -> None:
    server = make_server()

    async def run() -> None:
        async with server.client() as client:
            token = token_source(client)
            original = server.kick_off

            def elsewhere(request: httpx.Request) -> httpx.Response:
                original(request)
                return httpx.Response(
                    202, headers={"Content-Location": "https://evil.example.net/status/1"}
                )

            server.kick_off = elsewhere  # type: ignore[method-assign]
            await kick_off(client, BASE, token=token)

    with pytest.raises(BulkError, match="not on the FHIR server's origin"):
        asyncio.run(run())
    assert not any(r.url.host == "evil.example.net" for r in server.requests)
