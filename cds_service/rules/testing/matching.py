"""Comparing what a case expected with what the rule produced.

Expected cards are subsets: objects match key by key (keys the expectation leaves out are
ignored), lists position by position with the same length, and scalars by type as well as value
(`true` is not `1`, `"1"` is not `1`; `1` and `1.0` are the same number).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

__all__ = ["cards_diff", "show", "subset_mismatches", "without_uuids"]


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def show(value: Any, limit: int = 200) -> str:
    """`value` as compact JSON for a message, cut at `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _project(expected: Any, actual: Any) -> Any:
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _project(expected[k], actual[k]) for k in expected if k in actual}
    if isinstance(expected, list) and isinstance(actual, list):
        paired = [_project(e, a) for e, a in zip(expected, actual, strict=False)]
        return paired + actual[len(expected) :]
    return actual


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and bool(expected == actual)


def subset_mismatches(expected: Any, actual: Any, where: str) -> list[str]:
    """Where `actual` does not contain `expected` (objects by key, lists by position)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {show(actual)}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: expected {show(value)}, got nothing (absent)")
            else:
                out += subset_mismatches(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {show(actual)}"]
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {len(actual)}: {show(actual)}"]
        out = []
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += subset_mismatches(e, a, f"{where}[{index}]")
        return out
    if _same(expected, actual):
        return []
    return [f"{where}: expected {show(expected)}, got {show(actual)}"]


def cards_diff(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    """Unified diff of the expected cards against the actual ones (keys the expectation does not
    mention are left out of the actual side; extra cards are shown whole); "" when they match."""
    cards = [{k: v for k, v in card.items() if k != "uuid"} for card in actual]
    shown = [_project(e, a) for e, a in zip(expected, cards, strict=False)]
    shown += cards[len(expected) :]
    if shown == expected:
        return ""
    return "\n".join(
        difflib.unified_diff(
            _pretty(expected).splitlines(),
            _pretty(shown).splitlines(),
            "expected cards",
            "actual cards (keys not expected left out)",
            lineterm="",
        )
    )


def without_uuids(value: Any) -> Any:
    """`value` without its `uuid` members: a card's and its suggestions' are new on every call."""
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value
