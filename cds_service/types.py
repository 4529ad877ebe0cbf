"""Shared type aliases: the JSON shapes passed between modules and the clock.

These are the contract between layers, so every package may import them (they import nothing of
the service themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

__all__ = ["Clock", "JSONObject"]

JSONObject: TypeAlias = dict[str, Any]
"""A parsed JSON object: a FHIR resource or Bundle, a CDS Hooks context, a score's result."""

Clock: TypeAlias = Callable[[], datetime]
"""The current time, timezone-aware (UTC); tests pass a frozen one."""
