"""The SMART routes' own dependency: the sessions and discovery cache the app's lifespan set up.

The lifespan (main.py) puts a `SmartRuntime` on `app.state.smart`; what the SMART routes share
with the CDS Hooks routes (settings, HTTP client, tenants, clock) comes from `cds_service.deps`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from cds_service.smart.sessions import SmartRuntime

__all__ = ["SmartDep"]


async def get_smart(request: Request) -> SmartRuntime:
    """The SMART runtime of this run of the app."""
    runtime: SmartRuntime = request.app.state.smart
    return runtime


SmartDep = Annotated[SmartRuntime, Depends(get_smart)]
