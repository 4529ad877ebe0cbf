"""Synthea records moved into the present, for tests that run on the real clock."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

_DATE = re.compile(r'"(\d{4}-\d{2}-\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))?"')


def in_the_present(bundle: dict[str, Any]) -> dict[str, Any]:
    """The record with every date moved by whole days so its latest Observation is a month old.

    The replicas read the real clock, and the rules look back a few years at most: Synthea's
    2019 data would leave every window empty, and no rule would reach a score."""
    text = json.dumps(bundle)
    latest = max(
        date.fromisoformat(e["resource"]["effectiveDateTime"][:10])
        for e in bundle["entry"]
        if "effectiveDateTime" in e["resource"]
    )
    shift = datetime.now(UTC).date() - timedelta(days=30) - latest

    def moved(match: re.Match[str]) -> str:
        day, clock = match.group(1), match.group(2)
        if clock is None:
            return f'"{(date.fromisoformat(day) + shift).isoformat()}"'
        return f'"{(datetime.fromisoformat(day + clock) + shift).isoformat()}"'

    result: dict[str, Any] = json.loads(_DATE.sub(moved, text))
    return result
