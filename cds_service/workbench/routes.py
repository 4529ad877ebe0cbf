"""The workbench's pages and its analytics API (`/workbench`, `/workbench/api/...`)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
