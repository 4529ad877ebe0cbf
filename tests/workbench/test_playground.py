"""The playground's API: drafts linted at line:col, tested, evaluated on sample patients (the 55
Synthea patients of the shared Bulk export) or pasted requests, and simulated on the population,
without ever touching the served rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.cli import main
from cds_service.config import Settings, default_rules_dir
from cds_service.main import create_app
from cds_service.population.simulate import rules_digest
from tests.conftest import FIXTURES

SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"
RULES = default_rules_dir()
HTN_PATH = RULES / "patient-view" / "hypertension-uncontrolled.yaml"
HTN = HTN_PATH.read_text(encoding="utf-8")
HTN_TESTS = HTN_PATH.with_name("hypertension-uncontrolled.test.yaml").read_text(encoding="utf-8")
# Two of the 55 patients have uncontrolled hypertension at their last visit (docs: 3.6 %).
FIRING = "7646ecba-4812-452e-88e7-6235f77dabb2"


def _client(tmp_path: Path, population: Path | None = SYNTHEA_55) -> TestClient:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/wb.db",
        rules_reload_seconds=0,
        workbench_population=population,
        workbench_workdir=tmp_path / "workbench",
        workbench_auth="disabled",
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    before = rules_digest(RULES)
    with _client(tmp_path_factory.mktemp("playground")) as running:
        yield running
    assert rules_digest(RULES) == before, "the playground changed the served rules"


def post(client: TestClient, path: str, body: Any, *, csrf: bool = True) -> Any:
    headers = {"X-CSRF-Token": client.app.state.workbench_csrf} if csrf else {}  # type: ignore[attr-defined]
    return client.post(f"/workbench/api/playground/{path}", json=body, headers=headers)


SERVED = sorted(
    p
    for p in RULES.glob("*/*.yaml")
    if not p.name.endswith(".test.yaml") and not p.parent.name.startswith("_")
)


@pytest.mark.parametrize("path", SERVED, ids=lambda p: p.stem)
def test_every_served_rule_lints_clean_as_a_draft(client: TestClient, path: Path) -> None:
    tests = path.with_name(f"{path.stem}.test.yaml")
    body = {"rule": path.read_text(), "tests": tests.read_text() if tests.is_file() else None}
    answer = post(client, "lint", body)
    assert answer.status_code == 200
    errors = [i for i in answer.json()["issues"] if i["severity"] == "error"]
    assert answer.json()["ok"] and errors == []
    assert answer.json()["rule"]["id"] == path.stem


def test_errors_are_located_at_line_and_column(client: TestClient) -> None:
    broken = HTN.replace('      fhirpath: "%ageYears >= 18"', '      fhirpath: "%ageYears >="')
    broken = broken.replace("indicator: info", "indicator: loud")
    assert broken != HTN
    answer = post(client, "lint", {"rule": broken}).json()
    assert not answer["ok"] and answer["rule"] is None
    errors = [i for i in answer["issues"] if i["severity"] == "error"]
    lines = broken.split("\n")
    indicator = next(n for n, line in enumerate(lines, 1) if "indicator: loud" in line)
    assert any(i["line"] == indicator and i["field"] == "card.indicator" for i in errors), errors
    assert all(i["file"] == "rule" for i in errors)
    yaml_error = post(client, "lint", {"rule": "id: x\n  hook: [unclosed\n"}).json()
    [issue] = [i for i in yaml_error["issues"] if i["severity"] == "error"]
    assert issue["line"] == 2 and issue["col"] >= 1


def test_draft_tests_run_and_a_wrong_expectation_fails(client: TestClient) -> None:
    passing = post(client, "test", {"rule": HTN, "tests": HTN_TESTS})
    assert passing.status_code == 200
    result = passing.json()["tests"]
    assert result["failed"] == 0 and result["passed"] == len(result["cases"]) >= 10
    wrong = HTN_TESTS.replace("BP 146/88 on 2019-10-10", "BP 999/88 on 2019-10-10", 1)
    failing = post(client, "test", {"rule": HTN, "tests": wrong}).json()["tests"]
    assert failing["failed"] == 1
    [case] = [c for c in failing["cases"] if not c["ok"]]
    assert "999/88" in case["diff"]


def test_tests_of_a_broken_draft_are_refused_with_its_errors(client: TestClient) -> None:
    answer = post(client, "test", {"rule": HTN.replace("when:", "whenever:"), "tests": HTN_TESTS})
    assert answer.status_code == 422
    messages = [i["diagnostics"] for i in answer.json()["issue"]]
    assert any("whenever" in m and "is not a known key" in m for m in messages), messages


def test_evaluate_on_a_sample_patient_shows_the_card_and_follows_edits(
    client: TestClient,
) -> None:
    answer = post(client, "evaluate", {"rule": HTN, "patient": FIRING})
    assert answer.status_code == 200, answer.text
    trace = answer.json()["trace"]
    assert trace["status"] == "fired"
    assert trace["card"]["summary"].startswith("Hypertension not controlled: BP ")
    assert answer.json()["call"]["hook"] == "patient-view"
    assert trace["conditions"]["value"] is True
    edited = HTN.replace("Hypertension not controlled: BP", "Blood pressure above goal:")
    again = post(client, "evaluate", {"rule": edited, "patient": FIRING}).json()["trace"]
    assert again["card"]["summary"].startswith("Blood pressure above goal: ")
    stricter = HTN.replace('fhirpath: "%ageYears >= 18"', 'fhirpath: "%ageYears >= 120"')
    silent = post(client, "evaluate", {"rule": stricter, "patient": FIRING}).json()["trace"]
    assert silent["status"] == "silent" and silent["card"] is None
    assert silent["conditions"]["members"][0] == {
        "id": "adult",
        "kind": "leaf",
        "value": False,
        "expression": "%ageYears >= 120",
    }


def test_evaluate_on_a_pasted_request(client: TestClient) -> None:
    captured = FIXTURES / "cds-hooks" / "sandbox-client" / "captured-patient-view.json"
    request = json.loads(captured.read_text())["body"]  # what the CDS Hooks Sandbox sent
    answer = post(client, "evaluate", {"rule": HTN, "request": request})
    assert answer.status_code == 200, answer.text
    trace = answer.json()["trace"]
    # The example carries no prefetch for this rule's keys, and nothing is fetched.
    assert trace["status"] == "skipped"
    assert any("not in the request" in p["outcome"] for p in trace["prefetch"])


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"rule": HTN}, 400, None),  # neither patient nor request
        ({"rule": HTN, "patient": FIRING, "request": {}}, 400, None),
        ({"rule": HTN, "request": {"hook": "patient-view"}}, 400, "request.hookInstance"),
        ({"rule": HTN, "patient": "nobody"}, 404, None),
        ({"rule": "x" * 200_001, "patient": FIRING}, 400, "rule"),
        ({"rule": HTN, "patient": FIRING, "colour": "red"}, 400, "colour"),
    ],
)
def test_bad_evaluations_are_refused_by_name(
    client: TestClient, body: dict[str, Any], status: int, field: str | None
) -> None:
    answer = post(client, "evaluate", body)
    assert answer.status_code == status, answer.text
    issues = answer.json()["issue"]
    if field is not None:
        assert any(field in i.get("expression", []) for i in issues), issues


def test_a_request_of_another_hook_is_explained(client: TestClient) -> None:
    request = json.loads(
        (FIXTURES / "cds-hooks" / "spec-v2" / "index__04__request-order-sign.json").read_text()
    )
    answer = post(client, "evaluate", {"rule": HTN, "request": request})
    assert answer.status_code == 422
    assert "runs on 'patient-view'" in answer.json()["issue"][0]["diagnostics"]


def test_a_broken_draft_is_not_evaluated(client: TestClient) -> None:
    answer = post(client, "evaluate", {"rule": "id: [", "patient": FIRING})
    assert answer.status_code == 200
    assert not answer.json()["ok"] and "trace" not in answer.json()


def test_posts_without_the_csrf_header_are_refused(client: TestClient) -> None:
    assert post(client, "lint", {"rule": HTN}, csrf=False).status_code == 403


def test_patients_are_listed_by_name(client: TestClient) -> None:
    patients = client.get("/workbench/api/playground/patients").json()["patients"]
    assert len(patients) == 55 and FIRING in {p["id"] for p in patients}
    names = [p["name"].lower() for p in patients]
    assert names == sorted(names)


def test_simulate_a_draft_and_record_the_served_version(client: TestClient) -> None:
    answer = post(client, "simulate", {"rule": HTN})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["patients"] == 55
    assert (result["rule"]["calls"], result["rule"]["fired"]) == (55, 2)
    assert FIRING in result["rule"]["examplePatients"]
    headers = {"X-CSRF-Token": client.app.state.workbench_csrf}  # type: ignore[attr-defined]
    recorded = client.post(
        "/workbench/api/rules/hypertension-uncontrolled/simulate", json={}, headers=headers
    )
    assert recorded.status_code == 200, recorded.text
    detail = client.get("/workbench/api/rules/hypertension-uncontrolled").json()
    [sim] = detail["simulations"]
    assert (sim["version"], sim["calls"], sim["fired"]) == ("2", 55, 2)
    assert sim["fireRate"] == pytest.approx(2 / 55, abs=1e-4)


def test_without_a_population(tmp_path: Path) -> None:
    with _client(tmp_path, population=None) as plain:
        assert plain.get("/workbench/api/playground/patients").json()["patients"] == []
        assert post(plain, "evaluate", {"rule": HTN, "patient": FIRING}).status_code == 503
        assert post(plain, "simulate", {"rule": HTN}).status_code == 503
        page = plain.get("/workbench/playground")
        assert "CDS_WORKBENCH_POPULATION" in page.text


def test_pages_render_and_unknown_rules_are_404(client: TestClient) -> None:
    for path in (
        "/workbench/rules",
        "/workbench/playground",
        "/workbench/rules/statin-for-ascvd-risk",
    ):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Opening the playground starts its worker processes, before the first keystroke.
    assert client.app.state.workbench._pool is not None  # type: ignore[attr-defined]
    assert client.get("/workbench/rules/no-such-rule").status_code == 404
    assert client.get("/workbench/playground?rule=no-such-rule").status_code == 404
    assert client.get("/workbench/static/secrets.txt").status_code == 404


def test_rules_simulate_record_stores_each_rule_under_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/sims.db"
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    argv = ["rules", "simulate", str(SYNTHEA_55), "--workers", "1", "--partitions", "2"]
    assert main([*argv, "--record", "--format", "json", "--out", str(tmp_path / "r.json")]) == 0
    settings = Settings(database_url=url, rules_reload_seconds=0, workbench_auth="disabled")
    with TestClient(create_app(settings)) as fresh:
        detail = fresh.get("/workbench/api/rules/hypertension-uncontrolled").json()
    [sim] = detail["simulations"]
    assert (sim["version"], sim["patients"], sim["fired"]) == ("2", 55, 2)
    assert sim["source"] == "synthea-55-patients"
