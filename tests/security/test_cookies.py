"""No FHIR server's cookie is kept by the service's client, which serves every tenant."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from cds_service.config import Settings
from cds_service.resources import open_resources


def test_a_cookie_set_for_one_call_is_never_sent_with_the_next(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(
            200,
            json={"resourceType": "Bundle", "type": "searchset", "entry": []},
            headers={"set-cookie": "session=tenant-a-session; Path=/; Max-Age=3600"},
        )

    async def run() -> int:
        settings = Settings(database_url=f"sqlite:///{tmp_path}/cds.db")
        async with open_resources(settings, fhir_transport=httpx.MockTransport(server)) as opened:
            base = "http://ehr.example.org/fhir"
            first = await opened.http.get(f"{base}/Condition?patient=a")  # tenant A's call
            await opened.http.get(f"{base}/Condition?patient=b")  # tenant B's call
            assert first.headers["set-cookie"].startswith("session=")  # it was offered
            return len(opened.http.cookies)

    assert asyncio.run(run()) == 0
    assert seen == [None, None]
