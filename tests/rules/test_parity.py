"""Parity: every rule test case gives the same cards through the HTTP route of a running app as
through `rules test`.

The app is the production one (`create_app` loading a rules directory, the score cache, the
route, prefetch resolved over HTTP from a FHIR server), holding the one rule under test so that
its cards are the only ones; the rule test runner is `run_case`. Cases that inject risk scores
are left out (a running service computes them), and counted, so the test cannot pass on none. A
case's earlier overrides (`feedback:`) are sent as the EHR would: the call is made once, the
card it returns is overridden through the feedback endpoint, and the call made again is compared
(then the feedback is deleted, so that it snoozes no other case of the same patient).
"""

from __future__ import annotations

import difflib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings, default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.ruleset import SERVICES_FILE, load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.testing import MOCK_FHIR_BASE, PlannedCase, plan_tests, run_case
from cds_service.rules.testing.matching import without_uuids
from cds_service.rules.testing.runner import case_overrides, request_body

RULES = default_rules_dir()


def _cases() -> list[PlannedCase]:
    ruleset = load_ruleset(RULES, known_score_names())
    return [case for plan in plan_tests(RULES, ruleset) for case in plan.cases]


def _diff(test: Any, http: Any) -> str:
    lines = difflib.unified_diff(
        json.dumps(test, indent=1, sort_keys=True).splitlines(),
        json.dumps(http, indent=1, sort_keys=True).splitlines(),
        "rules test",
        "http",
        lineterm="",
    )
    return "\n".join(lines)


@dataclass(slots=True)
class _Case:
    """The case being replayed: its clock, and the FHIR server answering as the case's does."""

    now: datetime | None = None
    fhir: FhirDouble = field(default_factory=lambda: FhirDouble(base_url=MOCK_FHIR_BASE))

    def handler(self, request: httpx.Request) -> httpx.Response:
        return self.fhir.handle(request)


def _one_rule_dir(tmp: Path, rule_id: str) -> Path:
    """A rules directory holding the services file, the value sets and one rule."""
    source = next(p for p in RULES.rglob(f"{rule_id}.yaml"))
    folder = tmp / rule_id
    folder.mkdir()
    shutil.copy(RULES / SERVICES_FILE, folder / SERVICES_FILE)
    shutil.copytree(RULES / "_valuesets", folder / "_valuesets")
    (folder / source.parent.name).mkdir()
    shutil.copy(source, folder / source.parent.name / source.name)
    return folder


@pytest.fixture(scope="module")
def planned() -> list[PlannedCase]:
    cases = _cases()
    assert len(cases) >= 100, "the bundled rule pack's test cases did not load"
    return cases


def _replay(client: TestClient, case: PlannedCase, rule: CompiledRule) -> list[Any]:
    body = request_body(rule, case)  # the request `rules test` sends, sent over HTTP
    response = client.post(f"/cds-services/{rule.rule.service}", json=body)
    if response.status_code == 412:  # no rule could be evaluated: the rule was skipped
        return []
    assert response.status_code == 200, (case.key, response.text)
    cards: list[Any] = response.json()["cards"]
    return cards


def _replay_after_overrides(
    client: TestClient, case: PlannedCase, rule: CompiledRule, database: Path
) -> list[Any]:
    """The case's call made after its earlier overrides were sent on the card a first call
    returned (none are sent when it returns none: then there is nothing to snooze)."""
    service = rule.rule.service
    first = _replay(client, case, rule)
    if first:
        items = [
            {
                "card": first[0]["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": o.code, "system": o.system}},
                "outcomeTimestamp": o.at.isoformat(),
            }
            for o in case_overrides(rule, case).recorded
        ]
        sent = client.post(f"/cds-services/{service}/feedback", json={"feedback": items})
        assert sent.status_code == 200, (case.key, sent.text)
    try:
        return _replay(client, case, rule)
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DELETE FROM cds_feedback")


def _apps(tmp: Path, replaying: _Case) -> Iterator[tuple[str, TestClient]]:
    ruleset = load_ruleset(RULES, known_score_names())
    for rule_id in sorted(ruleset.rules):
        settings = Settings(
            database_url=f"sqlite:///{tmp / rule_id}.db",
            rules_dir=_one_rule_dir(tmp, rule_id),
            builtin_services=False,
            rules_reload_seconds=0,
            # Cases share patient ids: a cached "latest" score from one case must not serve
            # another, so every score is computed, as `rules test` computes it.
            score_cache_enabled=False,
            public_base_url="http://127.0.0.1:8080",  # what `rules test` resolves links with
            suppression_cache_seconds=0,  # each case's overrides are deleted after it
        )

        def now() -> datetime:
            assert replaying.now is not None
            return replaying.now

        app = create_app(settings, fhir_transport=httpx.MockTransport(replaying.handler), clock=now)
        with TestClient(app) as client:
            yield rule_id, client


def test_every_rule_test_case_gives_the_same_cards_over_http(
    planned: list[PlannedCase], tmp_path: Path
) -> None:
    ruleset = load_ruleset(RULES, known_score_names())
    replaying = _Case()
    compared = carded = snoozed = 0
    differences: list[str] = []
    for rule_id, client in _apps(tmp_path, replaying):
        rule = ruleset.rules[rule_id]
        for case in (c for c in planned if c.rule_id == rule_id):
            if case.case.scores:
                continue
            expected = run_case(case, ruleset)
            replaying.now = case.now
            fhir = case.case.fhir_server
            responses = fhir.responses if fhir is not None else {}
            replaying.fhir = FhirDouble(responses=responses, base_url=MOCK_FHIR_BASE)
            if case_overrides(rule, case).recorded:
                got = _replay_after_overrides(client, case, rule, tmp_path / f"{rule_id}.db")
                snoozed += 1
            else:
                got = _replay(client, case, rule)
            http, test = without_uuids(got), without_uuids(expected.actual_cards)
            compared += 1
            carded += bool(test)
            if http != test:
                differences.append(f"{case.key}:\n{_diff(test, http)}")
    assert not differences, "\n".join(differences)
    # 105 cases, 24 of which inject scores: the comparison covers the rest, cards and silence.
    assert compared >= 75, f"only {compared} cases compared"
    assert carded >= 30, f"only {carded} of the compared cases have a card"
    assert snoozed >= 2, f"only {snoozed} cases with earlier overrides"
