"""`POST /cds-services/{id}/feedback`, end to end on SQLite and PostgreSQL: feedback on cards the
service issued is stored with their rule; on any other card the batch is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.feedback.store import FeedbackStore, StoredFeedback
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services
from tests.api.calls import issue_cards
from tests.api.test_metrics import sample
from tests.conformance import assert_operation_outcome
from tests.conftest import FROZEN_NOW, load_fixture

SERVICE = "duplicate-therapy"
URL = f"/cds-services/{SERVICE}/feedback"


@pytest.fixture
def db_client(database_url: str) -> Iterator[TestClient]:
    app = create_app(
        Settings(database_url=database_url), services=builtin_services(), clock=lambda: FROZEN_NOW
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def stored(client: TestClient, service_id: str = "duplicate-therapy") -> list[StoredFeedback]:
    url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]

    async def read() -> list[StoredFeedback]:
        store = await FeedbackStore.open(url)
        try:
            return await store.list_for_service(service_id)
        finally:
            await store.close()

    return asyncio.run(read())


def issue(client: TestClient, *uuids: str, **origin: str) -> None:
    """Record the cards as issued by the service (as a hook call returning them would)."""
    url = client.app.state.cds.settings.database_url  # type: ignore[attr-defined]
    issue_cards(url, SERVICE, uuids, **origin)


@pytest.mark.parametrize("example", ["index__24", "index__25", "index__26"])
def test_official_examples_are_stored(db_client: TestClient, example: str) -> None:
    name = {
        "index__24": "index__24__feedback.json",
        "index__25": "index__25__feedback.json",
        "index__26": "index__26__feedback.json",
    }[example]
    body = load_fixture(f"cds-hooks/spec-v2/{name}")
    issue(db_client, body["feedback"][0]["card"], rule_id="a-rule", rule_version="3")
    response = db_client.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "stored": 1}
    rows = stored(db_client)
    assert [r.card_uuid for r in rows] == [body["feedback"][0]["card"]]
    assert rows[0].outcome == body["feedback"][0]["outcome"]
    assert (rows[0].rule_id, rows[0].rule_version, rows[0].patient_id) == ("a-rule", "3", "p1")


def test_replayed_feedback_is_stored_once(db_client: TestClient) -> None:
    body = load_fixture("cds-hooks/spec-v2/index__24__feedback.json")
    issue(db_client, body["feedback"][0]["card"])
    assert db_client.post(URL, json=body).json() == {"received": 1, "stored": 1}
    assert db_client.post(URL, json=body).json() == {"received": 1, "stored": 0}
    assert len(stored(db_client)) == 1


def test_batch_of_several_cards(db_client: TestClient) -> None:
    items = [
        {"card": f"card-{n}", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
        for n in range(5)
    ]
    items.append(
        {"card": "card-0", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
    )  # a duplicate inside the batch
    issue(db_client, *(f"card-{n}" for n in range(5)))
    response = db_client.post(URL, json={"feedback": items})
    assert response.json() == {"received": 6, "stored": 5}
    assert sorted(r.card_uuid for r in stored(db_client)) == [f"card-{n}" for n in range(5)]


def test_sandbox_style_reason_without_display(db_client: TestClient) -> None:
    body = {
        "feedback": [
            {
                "card": "c1",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00.000Z",
                "overrideReason": {
                    "reason": {"code": "r1", "system": "https://example.org/reasons"}
                },
            }
        ]
    }
    issue(db_client, "c1")
    assert db_client.post(URL, json=body).status_code == 200
    row = stored(db_client)[0]
    assert (row.override_reason_code, row.override_reason_display) == ("r1", None)


def test_flat_override_reason_is_normalised(db_client: TestClient) -> None:
    body = {
        "feedback": [
            {
                "card": "c1",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
                "overrideReason": {
                    "code": "r1",
                    "system": "https://example.org/reasons",
                    "userComment": "patient declined",
                },
            }
        ]
    }
    issue(db_client, "c1")
    assert db_client.post(URL, json=body).status_code == 200
    row = stored(db_client)[0]
    assert row.override_reason_code == "r1"
    assert row.override_user_comment == "patient declined"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (
            {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"},
            "acceptedSuggestions",
        ),
        (
            {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-11-28T10:00:00Z"},
            "feedback[0].outcome",
        ),
        ({"outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}, "feedback[0].card"),
        ({"card": "c", "outcome": "overridden"}, "feedback[0].outcomeTimestamp"),
        (
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
            "feedback[0].outcomeTimestamp",
        ),
        (
            {
                "card": "c",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
                "acceptedSuggestions": [{"id": "s"}],
            },
            "acceptedSuggestions",
        ),
        (
            {
                "card": "c",
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
                "acceptedSuggestions": [{}],
            },
            "feedback[0].acceptedSuggestions[0].id",
        ),
        (
            {
                "card": "c",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
                "overrideReason": {},
            },
            "cds-fb-3",
        ),
    ],
)
def test_invalid_feedback(db_client: TestClient, item: dict[str, Any], field: str) -> None:
    response = db_client.post(URL, json={"feedback": [item]})
    assert response.status_code == 400, response.text
    assert_operation_outcome(response.json(), field)
    assert stored(db_client) == []


NUL_ITEM = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}


@pytest.mark.parametrize(
    ("members", "field"),
    [
        ({"card": "c\u0000d"}, "feedback[0].card"),
        ({"overrideReason": {"userComment": "declined\u0000"}}, "userComment"),
        (
            {"overrideReason": {"reason": {"code": "r\u00001", "system": "http://x.org"}}},
            "reason.code",
        ),
        (
            {"overrideReason": {"reason": {"code": "r1", "system": "http://x.org\u0000"}}},
            "reason.system",
        ),
        (
            {"overrideReason": {"reason": {"code": "r1", "system": "s", "display": "\u0000"}}},
            "reason.display",
        ),
        (
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "s\u0000"}]},
            "acceptedSuggestions[0].id",
        ),
    ],
)
def test_a_nul_character_is_refused_naming_its_member(
    db_client: TestClient, members: dict[str, Any], field: str
) -> None:
    """No column of ours can hold NUL (PostgreSQL's text refuses it): the batch is refused at the
    boundary, naming the member, instead of failing its write with a 500."""
    issue(db_client, "c")
    response = db_client.post(URL, json={"feedback": [{**NUL_ITEM, **members}]})
    assert response.status_code == 400, response.text
    assert_operation_outcome(response.json(), field)
    assert "NUL" in response.text
    assert stored(db_client) == []


def test_one_bad_item_rejects_the_whole_batch(db_client: TestClient) -> None:
    good = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
    bad = {"card": "c2", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
    response = db_client.post(URL, json={"feedback": [good, bad]})
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "feedback[1]")
    assert stored(db_client) == []


@pytest.mark.parametrize("body", [{}, {"feedback": []}, {"feedback": {}}, {"feedback": "x"}])
def test_malformed_batches(db_client: TestClient, body: dict[str, Any]) -> None:
    response = db_client.post(URL, json=body)
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "feedback")


def test_unknown_service(db_client: TestClient) -> None:
    body = load_fixture("cds-hooks/spec-v2/index__25__feedback.json")
    response = db_client.post("/cds-services/nope/feedback", json=body)
    assert response.status_code == 404


def test_feedback_needs_json(db_client: TestClient) -> None:
    response = db_client.post(URL, content="feedback", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_feedback_on_cards_never_issued_is_refused(db_client: TestClient) -> None:
    issue(db_client, "c1")
    issue_cards(
        db_client.app.state.cds.settings.database_url,  # type: ignore[attr-defined]
        "allergy-documentation",
        ["c-other-service"],
    )
    items = [
        {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}
        for card in ("c1", "never-issued", "c-other-service")
    ]
    response = db_client.post(URL, json={"feedback": items})
    assert response.status_code == 400, response.text
    assert_operation_outcome(response.json(), "feedback[1].card", "feedback[2].card")
    assert "feedback[0]" not in response.text
    assert stored(db_client) == []  # the batch is refused whole
    text = db_client.get("/metrics").text
    assert sample(text, "cds_feedback_refused_total", service=SERVICE, reason="unknown-card") == 2
    assert sample(text, "cds_feedback_total", service=SERVICE) == 0


def test_feedback_is_counted_per_rule(db_client: TestClient) -> None:
    issue(db_client, "c1", rule_id="rule-a")
    issue(db_client, "c2", rule_id="rule-b", rule_version="7")
    reason = {"reason": {"code": "r1", "system": "https://example.org/reasons"}}
    items = [
        {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"},
        {
            "card": "c2",
            "outcome": "overridden",
            "overrideReason": reason,
            "outcomeTimestamp": "2026-11-28T10:00:00Z",
        },
    ]
    assert db_client.post(URL, json={"feedback": items}).status_code == 200
    text = db_client.get("/metrics").text
    labels = {"service": SERVICE, "outcome": "overridden"}
    assert sample(text, "cds_feedback_total", rule="rule-a", reason="none", **labels) == 1
    assert sample(text, "cds_feedback_total", rule="rule-b", reason="r1", **labels) == 1
    rows = {r.card_uuid: (r.rule_id, r.rule_version) for r in stored(db_client)}
    assert rows == {"c1": ("rule-a", "1"), "c2": ("rule-b", "7")}
