"""The logs of the whole test run hold no patient names, birth dates, tokens or JWTs.

Runs last (see conftest.py) over every line the service logged while the other tests drove it
with Synthea patients, real and forged JWTs, and access tokens. Under pytest-xdist each worker
logs to a file of its own in the run's log directory (CDS_TEST_LOG_DIR), and the scan reads them
all; `make pytest` runs it once more on its own after the workers have finished, over the
whole run's directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, SESSION_LOG_KEY

TOKENS = [
    "some-opaque-fhir-access-token",
    "secret-token-never-echoed",
    "eyJ-very-secret-access-token",
]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


def patients() -> list[dict]:  # type: ignore[type-arg]
    found = []
    for path in (FIXTURES / "fhir-r4" / "synthea").glob("*.json"):
        if path.name.startswith("_"):
            continue
        bundle = json.loads(path.read_text())
        found += [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
    ndjson = (
        FIXTURES / "bulk-ndjson" / "sample-bulk-fhir-datasets-10-patients" / "Patient.000.ndjson"
    )
    found += [json.loads(line) for line in ndjson.read_text().splitlines() if line.strip()]
    return found


def phi_strings() -> set[str]:
    out: set[str] = set()
    for patient in patients():
        for name in patient.get("name", []):
            for part in [*name.get("given", []), name.get("family", "")]:
                if len(part) >= 4:
                    out.add(part)
        if patient.get("birthDate"):
            out.add(patient["birthDate"])
    return out


def leaks(text: str) -> list[str]:
    """Every token, JWT, patient name or birth date found in `text`."""
    found = [secret for secret in TOKENS if secret in text]
    found += [m.group(0)[:12] + "…" for m in JWT.finditer(text)]
    found += sorted(s for s in phi_strings() if re.search(rf"\b{re.escape(s)}\b", text))
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    patient = patients()[0]
    planted = f"patient {patient['name'][0]['family']} born {patient['birthDate']}"
    assert len(leaks(planted)) == 2
    assert leaks("Bearer some-opaque-fhir-access-token") == ["some-opaque-fhir-access-token"]
    assert leaks("jti=abc hookInstance=d1577c69 tenant=hospital-a") == []


def logged_messages(directory: Path) -> list[dict]:  # type: ignore[type-arg]
    """Every complete log line of every process of the run, parsed (a worker still running may
    be half-way through writing its last line, which is left for the final scan)."""
    messages = []
    for path in sorted(directory.glob("*.log")):
        complete = path.read_text(encoding="utf-8").rpartition("\n")[0]
        messages += [json.loads(line) for line in complete.splitlines()]
    return messages


def test_every_process_log_of_the_run_is_read(tmp_path: Path) -> None:
    (tmp_path / "gw0-1.log").write_text('{"logger": "a"}\n')
    (tmp_path / "gw1-2.log").write_text('{"logger": "b"}\n{"logger": "c"}\n{"logg')
    (tmp_path / "notes.txt").write_text("not a log")
    assert [m["logger"] for m in logged_messages(tmp_path)] == ["a", "b", "c"]


def test_session_logs_hold_no_phi_or_tokens(pytestconfig: pytest.Config) -> None:
    own: Path = pytestconfig.stash[SESSION_LOG_KEY]
    messages = logged_messages(own.parent)
    if not any(m["logger"] == "cds_service.calls" for m in messages):
        pytest.skip("no hook call was made in this session: nothing to scan")
    text = "\n".join(json.dumps({k: v for k, v in m.items() if k != "time"}) for m in messages)
    assert leaks(text) == []
