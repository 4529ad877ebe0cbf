"""The floor: the cheapest service on our stack (FastAPI, uvicorn, orjson) that does what an EHR
needs from a CDS service at the wire: read the request body, parse it, answer one fixed card.

    uvicorn --factory bench.floor:create_floor --port 8090
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

CARD = orjson.dumps(
    {
        "cards": [
            {
                "uuid": "9e4f0f3c-2f6a-4d43-9c1e-6a2b1f3f7a11",
                "summary": "Floor card",
                "indicator": "info",
                "source": {"label": "floor"},
            }
        ]
    }
)


def create_floor() -> FastAPI:
    app = FastAPI()

    @app.post("/cds-services/{service_id}")
    async def call(service_id: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert isinstance(body, dict)
        return Response(CARD, media_type="application/json")

    return app
