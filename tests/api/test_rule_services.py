"""Rules served as CDS services: grouping, shadow mode, isolation, 412, hot reload."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.rules import runtime
from tests.api.calls import nsaid_on_warfarin_call
from tests.conformance import assert_conformant_response, assert_operation_outcome
from tests.conftest import FROZEN_NOW

ROOT = Path(__file__).resolve().parents[2]

RULE = """\
schema: cds-rule/1
id: {id}
version: 1
status: {status}
hook: patient-view
service: test-service
title: Test rule {id}
description: A rule written by a test.
references: [https://example.org/guideline]
prefetch:
  patient: Patient/{{{{context.patientId}}}}
let:
  name: "%patient.name.first().given.first()"
  {extra_let}
when:
  id: has-name
  fhirpath: "{condition}"
card:
  summary: "{summary}"
  indicator: info
  source: {{label: Test rules}}
"""


def write_rule(
    root: Path,
    rule_id: str,
    *,
    status: str = "active",
    summary: str = "Hello {{name}}",
    condition: str = "%name.exists()",
    extra_let: str = "",
) -> Path:
    path = root / "patient-view" / f"{rule_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        RULE.format(
            id=rule_id, status=status, summary=summary, condition=condition, extra_let=extra_let
        )
    )
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    root.mkdir()
    shutil.copytree(ROOT / "rules" / "_valuesets", root / "_valuesets")
    (root / "_services.yaml").write_text(
        "schema: cds-services/1\nservices:\n  test-service:\n"
        "    title: Test service\n    description: Rules written by tests\n"
    )
    return root


def make_client(tmp_path: Path, rules: Path, **settings: Any) -> TestClient:
    config = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db",
        rules_dir=rules,
        builtin_services=False,
        **settings,
    )
    return TestClient(create_app(config, clock=lambda: FROZEN_NOW))


def call(
    client: TestClient, prefetch: dict[str, Any] | None = None, service: str = "test-service"
) -> Any:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return client.post(f"/cds-services/{service}", json=body)


PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"given": ["Ada"], "family": "L"}]}


def test_rules_become_services(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "greet")
    with make_client(tmp_path, rules_dir) as client:
        services = client.get("/cds-services").json()["services"]
        assert services == [
            {
                "hook": "patient-view",
                "id": "test-service-patient-view",
                "title": "Test service",
                "description": "Rules written by tests",
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            }
        ]
        response = call(client, {"patient": PATIENT})
    assert response.status_code == 200
    body = response.json()
    assert_conformant_response(body)
    assert [c["summary"] for c in body["cards"]] == ["Hello Ada"]


def test_bundled_rule_pack_is_served(tmp_path: Path) -> None:
    config = Settings(database_url=f"sqlite:///{tmp_path}/f.db")
    with TestClient(create_app(config, clock=lambda: FROZEN_NOW)) as client:
        services = client.get("/cds-services").json()["services"]
        ready = client.get("/readyz").json()
    ids = {s["id"] for s in services}
    assert {
        "medication-safety-order-select",
        "medication-safety-order-sign",
        "preventive-care-patient-view",
        "inpatient-safety-encounter-discharge",
    } <= ids
    assert ready["checks"]["rules"] == "ok", ready


def test_nsaid_rule_over_http(tmp_path: Path) -> None:
    config = Settings(database_url=f"sqlite:///{tmp_path}/f.db")
    body = nsaid_on_warfarin_call()
    with TestClient(create_app(config, clock=lambda: FROZEN_NOW)) as client:
        response = client.post("/cds-services/medication-safety", json=body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert_conformant_response(response.json())
    summaries = [c["summary"] for c in cards]
    assert "Bleeding risk: Ibuprofen 200 MG Oral Tablet with Warfarin Sodium 5 MG Oral Tablet" in (
        summaries
    )


def test_draft_rules_run_in_shadow(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "live")
    write_rule(rules_dir, "shadowed", status="draft", summary="Shadow {{name}}")
    with make_client(tmp_path, rules_dir) as client:
        response = call(client, {"patient": PATIENT})
        stats = client.app.state.cds.rules.stats.counts  # type: ignore[attr-defined]
    assert [c["summary"] for c in response.json()["cards"]] == ["Hello Ada"]
    assert stats["shadowed"] == {"shadow": 1, "calls": 1}
    assert stats["live"] == {"fired": 1, "calls": 1}


def test_a_failing_rule_does_not_stop_the_others(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "good")
    # single() on two items is a FHIRPath runtime error.
    write_rule(rules_dir, "broken-at-runtime", condition="%patient.name.given.single().exists()")
    patient = {**PATIENT, "name": [{"given": ["Ada", "Augusta"]}]}
    with make_client(tmp_path, rules_dir) as client:
        response = call(client, {"patient": patient})
        stats = client.app.state.cds.rules.stats.counts  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert [c["summary"] for c in response.json()["cards"]] == ["Hello Ada"]
    assert stats["broken-at-runtime"] == {"error": 1, "calls": 1}


def test_rules_past_their_budget_are_skipped(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "slow")
    with make_client(tmp_path, rules_dir, rule_budget_seconds=1e-9) as client:
        response = call(client, {"patient": PATIENT})
        stats = client.app.state.cds.rules.stats.counts  # type: ignore[attr-defined]
    assert response.json() == {"cards": []}
    assert stats["slow"] == {"timeout": 1, "calls": 1}


def test_412_when_no_rule_has_its_data(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "needs-patient")
    with make_client(tmp_path, rules_dir) as client:
        response = call(client)  # no prefetch, no fhirServer: the patient cannot be obtained
        known_empty = call(client, {"patient": None})
    assert response.status_code == 412
    assert_operation_outcome(response.json(), "needs-patient", "patient")
    assert known_empty.status_code == 200 and known_empty.json() == {"cards": []}


def wait_for(predicate: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_hot_reload_and_last_good_set(tmp_path: Path, rules_dir: Path) -> None:
    path = write_rule(rules_dir, "greet")
    with make_client(tmp_path, rules_dir, rules_reload_seconds=0.05) as client:
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Hello Ada"
        # An edit takes effect without a restart.
        write_rule(rules_dir, "greet", summary="Welcome back {{name}}")
        assert wait_for(
            lambda: (
                call(client, {"patient": PATIENT}).json()["cards"][0]["summary"]
                == "Welcome back Ada"
            )
        )
        # A broken edit leaves the rule's last good version serving and says so on /readyz.
        path.write_text(path.read_text().replace("fhirpath:", "fhirpath: (("))
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] != "ok")
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "each broken rule serves its last good version" in ready.json()["checks"]["rules"]
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == (
            "Welcome back Ada"
        )
        # Fixing it recovers.
        write_rule(rules_dir, "greet", summary="Fixed {{name}}")
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] == "ok")
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Fixed Ada"


def test_every_failed_reload_names_its_first_error_on_readyz(
    tmp_path: Path, rules_dir: Path
) -> None:
    path = write_rule(rules_dir, "greet")
    with make_client(tmp_path, rules_dir, rules_reload_seconds=0.05) as client:
        # YAML that PyYAML cannot build (an unknown tag) once stopped the reload with an
        # exception: logged, while /readyz said "ok".
        path.write_text(path.read_text().replace('name: "%', 'name: !foo "%'))
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] != "ok")
        assert client.get("/readyz").json()["checks"]["rules"] == (
            "1 error(s) in the rules directory, the first patient-view/greet.yaml:13:9: "
            "let.name: YAML error: could not determine a constructor for the tag '!foo'; "
            "the other files' edits apply, and each broken rule serves its last good version"
        )
        # A FHIRPath error under `let:`, and a second file, counted.
        write_rule(rules_dir, "greet", extra_let='since: "%patient.birthDate.frist()"')
        write_rule(rules_dir, "other", condition="%name.exists(")
        expected = (
            "2 error(s) in the rules directory, the first patient-view/greet.yaml:14:3: "
            "let.since: unknown function frist() (did you mean first()?) [greet]; the other files' "
            "edits apply, and each broken rule serves its last good version"
        )
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] == expected)
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Hello Ada"
        # A good reload clears it.
        write_rule(rules_dir, "greet", summary="Fixed {{name}}")
        (rules_dir / "patient-view" / "other.yaml").unlink()
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] == "ok")
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Fixed Ada"


def test_one_broken_file_holds_back_no_other_files_edits(tmp_path: Path, rules_dir: Path) -> None:
    greet = write_rule(rules_dir, "greet")
    write_rule(rules_dir, "other", summary="Other {{name}}")
    with make_client(tmp_path, rules_dir, rules_reload_seconds=0.05) as client:
        assert sorted(c["summary"] for c in call(client, {"patient": PATIENT}).json()["cards"]) == [
            "Hello Ada",
            "Other Ada",
        ]
        greet.write_text(greet.read_text().replace("fhirpath:", "fhirpath: (("))
        write_rule(rules_dir, "other", summary="Edited {{name}}")
        # The valid edit applies; the broken rule serves its last good version.
        assert wait_for(
            lambda: (
                sorted(c["summary"] for c in call(client, {"patient": PATIENT}).json()["cards"])
                == ["Edited Ada", "Hello Ada"]
            )
        )
        checks = client.get("/readyz").json()["checks"]["rules"]
        assert checks.startswith(
            "1 error(s) in the rules directory, the first patient-view/greet.yaml"
        )
        # A broken services file keeps the whole last good set.
        services = rules_dir / "_services.yaml"
        services.write_text(services.read_text() + "  broken: [\n")
        assert wait_for(
            lambda: (
                "the last good set keeps serving" in client.get("/readyz").json()["checks"]["rules"]
            )
        )


def test_a_reload_that_raises_shows_on_readyz_until_a_good_one(
    tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_rule(rules_dir, "greet")
    with make_client(tmp_path, rules_dir, rules_reload_seconds=0.05) as client:

        def failing(*args: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(runtime, "load_ruleset", failing)
        path.write_text(path.read_text().replace("Hello", "Hi"))
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] != "ok")
        assert client.get("/readyz").json()["checks"]["rules"] == (
            "rules reload failed (RuntimeError); the last good set keeps serving"
        )
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Hello Ada"
        monkeypatch.undo()
        write_rule(rules_dir, "greet", summary="Fixed {{name}}")
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["rules"] == "ok")
        assert call(client, {"patient": PATIENT}).json()["cards"][0]["summary"] == "Fixed Ada"


def test_broken_files_at_start_up_are_reported_not_fatal(tmp_path: Path, rules_dir: Path) -> None:
    write_rule(rules_dir, "good")
    bad = rules_dir / "patient-view" / "bad.yaml"
    bad.write_text("schema: cds-rule/1\nid: bad\nid: again\n")
    with make_client(tmp_path, rules_dir) as client:
        ready = client.get("/readyz").json()
        response = call(client, {"patient": PATIENT})
    assert ready["checks"]["rules"].startswith("1 error")
    assert [c["summary"] for c in response.json()["cards"]] == ["Hello Ada"]


def test_links_to_this_service_use_the_public_base_url(tmp_path: Path, rules_dir: Path) -> None:
    path = write_rule(rules_dir, "linked")
    path.write_text(
        path.read_text()
        + "  links:\n    - {label: Open risk view, url: /smart/launch, type: smart,"
        + ' appContext: "{\\"rule\\":\\"linked\\"}"}\n'
    )
    with make_client(
        tmp_path, rules_dir, public_base_url="https://cds.hospital.example/"
    ) as client:
        card = call(client, {"patient": PATIENT}).json()["cards"][0]
    with make_client(tmp_path, rules_dir) as client:
        fallback = call(client, {"patient": PATIENT}).json()["cards"][0]
    assert card["links"] == [
        {
            "label": "Open risk view",
            "type": "smart",
            "url": "https://cds.hospital.example/smart/launch",
            "appContext": '{"rule":"linked"}',
        }
    ]
    assert fallback["links"][0]["url"] == "http://testserver/smart/launch"


def test_slow_fhir_server_never_holds_the_call_past_its_budget(
    tmp_path: Path, rules_dir: Path
) -> None:
    """One rule has its data in prefetch; the other's must be fetched from a server that hangs.
    The call answers when the budget ends, with the card it could compute."""
    import asyncio

    import httpx

    write_rule(rules_dir, "has-data")
    slow = write_rule(rules_dir, "needs-fetch")
    # Another query (a key sent for the same query would answer it: no fetch).
    slow.write_text(
        slow.read_text()
        .replace(
            "  patient: Patient/{{context.patientId}}",
            "  chart: Patient/{{context.patientId}}?_elements=name",
        )
        .replace("%patient", "%chart")
    )

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=PATIENT)

    config = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db",
        rules_dir=rules_dir,
        builtin_services=False,
        hook_budget_seconds=0.4,
    )
    app = create_app(config, fhir_transport=httpx.MockTransport(hang), clock=lambda: FROZEN_NOW)
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"patient": PATIENT},
    }
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.post("/cds-services/test-service", json=body)
        elapsed = time.monotonic() - started
        stats = client.app.state.cds.rules.stats.counts  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert [c["summary"] for c in response.json()["cards"]] == ["Hello Ada"]
    assert stats["needs-fetch"] == {"skipped": 1, "calls": 1}
    assert elapsed < 5, f"the call took {elapsed:.1f}s against a 0.4 s budget"


def test_a_first_af_diagnosis_is_scored_when_served(tmp_path: Path) -> None:
    """The new Condition of problem-list-item-create is in the hook's context, not in prefetch:
    the risk scores see it when served, as they do in rule tests (the one evaluation path)."""
    snomed = "http://snomed.info/sct"
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    hypertension = {
        "resourceType": "Condition",
        "id": "htn",
        "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
        "code": {"coding": [{"system": snomed, "code": "59621000"}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2015-01-01",
    }
    new_af = {
        "resourceType": "Condition",
        "id": "af",
        "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
        "code": {"coding": [{"system": snomed, "code": "49436004"}], "text": "AF"},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2026-11-27",
    }
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1956-05-01"}
    searchset = {"resourceType": "Bundle", "type": "searchset"}
    body = {
        "hook": "problem-list-item-create",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "conditions": {"resourceType": "Bundle", "entry": [{"resource": new_af}]},
        },
        "prefetch": {
            "patient": patient,
            "problemList": {**searchset, "entry": [{"resource": hypertension}]},
            "activeMedications": searchset,
            "scorePatient": patient,
            "scoreObservations": searchset,
            "scoreConditions": {**searchset, "entry": [{"resource": hypertension}]},
            "scoreMedications": searchset,
        },
    }
    config = Settings(database_url=f"sqlite:///{tmp_path}/f.db", builtin_services=False)
    with TestClient(create_app(config, clock=lambda: FROZEN_NOW)) as client:
        response = client.post("/cds-services/preventive-care", json=body)
    assert response.status_code == 200, response.text
    summaries = [card["summary"] for card in response.json()["cards"]]
    # 70-year-old woman with hypertension: age 65-74 (1) + female (1) + hypertension (1) = 3,
    # computable only when the score sees the AF being added.
    assert summaries == ["AF added, no anticoagulant: CHA2DS2-VASc 3, anticoagulation recommended"]
