"""A local FHIR server for the load benchmark: every Synthea fixture patient, answering after a
fixed latency (50 ms by default), as a slow EHR would.

It stands for the EHR's server, which has its own machine and indexes: each distinct query is
answered from the in-memory resources once and its JSON kept, so the server's own work stays
small beside the latency (the benchmark also runs it on the load generator's core, not the
service's).

    python bench/fhir_server.py --port 8095 [--latency 0.05] [--no-batch]

It takes FHIR batches (its CapabilityStatement says so, and a `batch` Bundle POSTed to the base
is answered after one latency), as HAPI and most EHR servers do; `--no-batch` makes it a server
that does not, so the service fetches each query on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

from cds_service.fhir_double import FhirDouble

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "fhir-r4" / "synthea"


def create(latency: float, base_url: str, batch: bool = True) -> FastAPI:
    resources = []
    for path in sorted(SYNTHEA.glob("*.json")):
        if not path.name.startswith("_"):
            bundle = json.loads(path.read_text())
            resources += [e["resource"] for e in bundle.get("entry", [])]
    local = FhirDouble(resources, base_url=base_url, record=False, batch=batch)
    answers: dict[str, tuple[int, bytes]] = {}
    app = FastAPI()

    @app.get("/fhir/{path:path}")
    async def fhir(path: str, request: Request) -> Response:
        await asyncio.sleep(latency)
        query = request.url.query
        relative = path + (f"?{query}" if query else "")
        if relative not in answers:
            status, body = local.answer(relative)
            answers[relative] = status, orjson.dumps(body)
        status, answer = answers[relative]
        return Response(answer, status_code=status, media_type="application/fhir+json")

    @app.post("/fhir")
    async def fhir_batch(request: Request) -> Response:
        await asyncio.sleep(latency)  # one round trip for the whole batch
        try:
            bundle = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            bundle = None
        if not batch or not isinstance(bundle, dict) or bundle.get("type") != "batch":
            problem = local.handle(httpx.Request("POST", base_url, content=b"{}"))
            return Response(problem.content, status_code=400, media_type="application/fhir+json")
        entries = []
        for entry in bundle.get("entry") or []:
            url = str((entry.get("request") or {}).get("url", ""))
            if url not in answers:
                status, body = local.answer(url)
                answers[url] = status, orjson.dumps(body)
            status, answer = answers[url]
            key = "resource" if status == 200 else "outcome"
            entries.append(
                b'{"response":{"status":"%d"%s},%s}'
                % (
                    status,
                    b"" if status == 200 else b',"outcome":' + answer,
                    b'"resource":' + answer if key == "resource" else b'"fullUrl":""',
                )
            )
        body = b'{"resourceType":"Bundle","type":"batch-response","entry":[%s]}' % b",".join(
            entries
        )
        return Response(body, media_type="application/fhir+json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--no-batch", dest="batch", action="store_false")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}/fhir"
    uvicorn.run(
        create(args.latency, base, args.batch),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
