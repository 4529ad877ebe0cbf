"""Card models: conformant by construction (cds-resp-1…6 and the field rules)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.wire.response import Action, Card, CDSResponse, Link, Source, Suggestion
from tests.conformance import assert_conformant_response
from tests.conftest import load_fixture

SOURCE = Source(label="Test")


def card(**fields: Any) -> Card:
    return Card(summary="Something to know", indicator="info", source=SOURCE, **fields)


def test_empty_response_is_exactly_cards_empty() -> None:
    assert CDSResponse().wire() == {"cards": []}
    assert CDSResponse(cards=[], system_actions=[]).wire() == {"cards": []}


def test_every_card_and_suggestion_gets_a_uuid() -> None:
    a = card(suggestions=[Suggestion(label="Do it")], selection_behavior="any")
    b = card()
    assert a.uuid != b.uuid
    body = CDSResponse(cards=[a, b]).wire()
    assert body["cards"][0]["suggestions"][0]["uuid"]
    assert_conformant_response(body)


def test_null_and_empty_members_are_omitted() -> None:
    wire = card(links=[], suggestions=None, override_reasons=[]).wire()
    assert set(wire) == {"uuid", "summary", "indicator", "source"}


def test_camel_case_on_the_wire() -> None:
    wire = card(
        suggestions=[
            Suggestion(
                label="x",
                is_recommended=True,
                actions=[
                    Action(type="delete", description="Remove", resource_id="ServiceRequest/1")
                ],
            )
        ],
        selection_behavior="at-most-one",
        links=[
            Link(
                label="App",
                url="https://app.example.org/launch",
                type="smart",
                app_context='{"a":1}',
                autolaunchable=False,
            )
        ],
    ).wire()
    assert wire["selectionBehavior"] == "at-most-one"
    assert wire["suggestions"][0]["isRecommended"] is True
    assert wire["suggestions"][0]["actions"][0]["resourceId"] == "ServiceRequest/1"
    assert wire["links"][0]["appContext"] == '{"a":1}'
    assert wire["links"][0]["autolaunchable"] is False


@pytest.mark.parametrize(
    ("build", "invariant"),
    [
        (
            lambda: card(
                suggestions=[
                    Suggestion(label="a", is_recommended=True),
                    Suggestion(label="b", is_recommended=True),
                ],
                selection_behavior="at-most-one",
            ),
            "cds-resp-1",
        ),
        (lambda: Action(type="delete", description="d"), "cds-resp-2"),
        (
            lambda: Action(
                type="delete",
                description="d",
                resource_id="X/1",
                resource={"resourceType": "Basic"},
            ),
            "cds-resp-2",
        ),
        (
            lambda: Link(label="l", url="https://x.example", type="absolute", app_context="{}"),
            "cds-resp-3",
        ),
        (lambda: card(override_reasons=[{"code": "c", "system": "s"}]), "display"),
        (
            lambda: Suggestion(label="s", actions=[Action(type="delete", resource_id="X/1")]),
            "cds-resp-5",
        ),
        (lambda: card(suggestions=[Suggestion(label="s")]), "cds-resp-6"),
        (lambda: Action(type="create", description="c"), "resource"),
        (lambda: Action(type="update", description="u"), "resource"),
        (lambda: Card(summary="x" * 140, indicator="info", source=SOURCE), "summary"),
        (lambda: Card(summary="s", indicator="hard-stop", source=SOURCE), "indicator"),
        (lambda: Source(label="l", url="example.com"), "url"),
        (lambda: Link(label="l", url="/relative", type="absolute"), "url"),
        (lambda: Source(label=""), "label"),
    ],
)
def test_invalid_cards_cannot_be_built(build: Any, invariant: str) -> None:
    with pytest.raises(ValidationError) as raised:
        build()
    assert invariant in str(raised.value)


def test_two_recommended_are_fine_with_any() -> None:
    c = card(
        suggestions=[
            Suggestion(label="a", is_recommended=True),
            Suggestion(label="b", is_recommended=True),
        ],
        selection_behavior="any",
    )
    assert_conformant_response(CDSResponse(cards=[c]).wire())


@pytest.mark.parametrize(
    "name", ["index__15__response.json", "index__21__response.json", "index__22__response.json"]
)
def test_official_response_examples_round_trip(name: str) -> None:
    """Our models accept and re-emit the specification's own response examples unchanged
    (uuids aside: we add them where the example has none)."""
    example = load_fixture(f"cds-hooks/spec-v2/{name}")
    cards = [Card.model_validate(c) for c in example["cards"]]
    actions = [Action.model_validate(a) for a in example.get("systemActions", [])]
    wire = CDSResponse(cards=cards, system_actions=actions or None).wire()
    for ours, theirs in zip(wire["cards"], example["cards"], strict=True):
        assert {k: v for k, v in ours.items() if k != "uuid" or "uuid" in theirs} == theirs
    assert wire.get("systemActions", []) == example.get("systemActions", [])


def test_response_example_without_indicator_is_rejected() -> None:
    """index__23 omits the REQUIRED indicator: we would never emit such a card."""
    example = load_fixture("cds-hooks/spec-v2/index__23__response.json")
    with pytest.raises(ValidationError, match="indicator"):
        Card.model_validate(example["cards"][0])
