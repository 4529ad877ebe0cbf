"""Objects the plugin tests point fake entry points at (tests/test_plugins.py)."""

from __future__ import annotations

from typing import Any

from cds_service.scores.base import BaseScore


class GoodScore(BaseScore):
    name = "good-score"
    title = "A test score"
    unit = "points"

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        return 1.0, []


class ClashingScore(GoodScore):
    name = "ascvd"


class NotAScore:
    name = "not-a-score"


def double(inputs: list[Any]) -> list[Any]:
    return [item * 2 for item in inputs if isinstance(item, int | float)]


DOUBLE = {"fn": double, "arity": {0: []}}
SHADOWING = {"fn": double}
NO_FN: dict[str, Any] = {"arity": {0: []}}
BAD_ARITY = {"fn": double, "arity": {"zero": "none"}}


def no_services() -> list[Any]:
    return []


def wrong_services() -> list[Any]:
    return ["not a service"]
