"""FastAPI dependencies: `Annotated` aliases for what routes need from the app state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from cds_service.state import AppState

__all__ = ["StateDep"]


async def get_state(request: Request) -> AppState:
    """The app's state, set up by the lifespan in `create_app` (async: a plain function would
    be run in a worker thread on every request)."""
    state: AppState = request.app.state.cds
    return state


StateDep = Annotated[AppState, Depends(get_state)]
