"""FastAPI dependencies shared by the routers (`api/`, `smart/`): `Annotated` aliases for the
app's collaborators, none of them Optional.

`create_app` puts the `AppState` on `app.state.cds`; its lifespan opens the `Resources` once and
puts them on `app.state.resources`. Every dependency is async: FastAPI would hand a plain function
to a worker thread on every request. Aliases only one router uses live beside it (`api/deps.py`,
`smart/deps.py`).
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends
from starlette.requests import Request

from cds_service.config import Settings
from cds_service.resources import Resources
from cds_service.rules.runtime import RuleRuntime
from cds_service.security.tenants import TenantRegistry
from cds_service.state import AppState
from cds_service.types import Clock

__all__ = [
    "ClockDep",
    "HttpDep",
    "ResourcesDep",
    "RulesDep",
    "SettingsDep",
    "StateDep",
    "TenantsDep",
    "app_resources",
    "app_state",
]


def app_state(request: Request) -> AppState:
    """The app's state, built by `create_app` (for the hot path: no dependency to resolve)."""
    state: AppState = request.app.state.cds
    return state


async def get_state(request: Request) -> AppState:
    """The app's state, built by `create_app`."""
    return app_state(request)


StateDep = Annotated[AppState, Depends(get_state)]


def app_resources(request: Request) -> Resources:
    """The resources the app's lifespan opened (for the hot path: no dependency to resolve)."""
    try:
        resources: Resources = request.app.state.resources
    except AttributeError:
        raise RuntimeError(
            "the app's resources are opened by its lifespan: serve the app, or enter "
            "`with TestClient(app)`"
        ) from None
    return resources


async def get_resources(request: Request) -> Resources:
    """The resources the app's lifespan opened."""
    return app_resources(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_clock(state: StateDep) -> Clock:
    return state.clock


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_tenants(state: StateDep) -> TenantRegistry:
    return state.tenants


TenantsDep = Annotated[TenantRegistry, Depends(get_tenants)]


async def get_rules(state: StateDep) -> RuleRuntime | None:
    """The rule runtime; None when the app serves services it was given (no rules directory)."""
    return state.rules


RulesDep = Annotated[RuleRuntime | None, Depends(get_rules)]


async def get_http(resources: ResourcesDep) -> httpx.AsyncClient:
    """The client for EHR FHIR servers and SMART authorization servers."""
    return resources.http


HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
