"""Checks every response body we emit against CDS Hooks 2.0 (used by many tests)."""

from __future__ import annotations

from typing import Any

INDICATORS = {"info", "warning", "critical"}


def assert_no_empty(value: Any, path: str = "$") -> None:
    """No member is null, "", [] or {} (the "Use of JSON" rule)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert item not in (None, "", [], {}), f"{path}.{key} is empty: {item!r}"
            assert_no_empty(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert item not in (None, "", [], {}), f"{path}[{index}] is empty"
            assert_no_empty(item, f"{path}[{index}]")


def assert_conformant_response(body: dict[str, Any]) -> None:
    """A hook response: cards present, every card and suggestion valid, invariants 1-6 hold."""
    assert isinstance(body.get("cards"), list), "cards is required"
    assert set(body) <= {"cards", "systemActions", "extension"}
    rest = {k: v for k, v in body.items() if k != "cards"}
    assert_no_empty(rest)
    for card in body["cards"]:
        assert_no_empty(card)
        assert isinstance(card["uuid"], str) and card["uuid"]
        assert 0 < len(card["summary"]) < 140
        assert card["indicator"] in INDICATORS
        assert card["source"]["label"]
        suggestions = card.get("suggestions", [])
        if suggestions:
            assert card["selectionBehavior"] in ("at-most-one", "any")  # cds-resp-6
            if card["selectionBehavior"] == "at-most-one":  # cds-resp-1
                assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
        for suggestion in suggestions:
            assert suggestion["label"] and suggestion["uuid"]
            for action in suggestion.get("actions", []):
                assert action.get("description")  # cds-resp-5
                _assert_action(action)
        for reason in card.get("overrideReasons", []):
            assert reason["code"] and reason["system"] and reason["display"]  # cds-resp-4
        for link in card.get("links", []):
            assert link["label"] and link["url"] and link["type"] in ("absolute", "smart")
            if "appContext" in link:
                assert link["type"] == "smart"  # cds-resp-3
    for action in body.get("systemActions", []):
        _assert_action(action)


def _assert_action(action: dict[str, Any]) -> None:
    assert action["type"] in ("create", "update", "delete")
    if action["type"] in ("create", "update"):
        assert isinstance(action.get("resource"), dict)
    if action["type"] == "delete":  # cds-resp-2
        assert action.get("resourceId") and "resource" not in action


def assert_operation_outcome(body: dict[str, Any], *fields: str) -> None:
    """An OperationOutcome whose issues name each of `fields` (in expression or diagnostics)."""
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    named = " ".join(
        " ".join(issue.get("expression", [])) + " " + issue.get("diagnostics", "")
        for issue in body["issue"]
    )
    for field in fields:
        assert field in named, f"{field!r} not named in {body}"
