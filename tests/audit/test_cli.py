"""`cds-service audit`: arguments, JSON lines, the table, exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.audit import AuditEntry, AuditStore
from cds_service.audit.cli import UsageError, add_parser, parse_when, run
from cds_service.audit.store import RuleStatus

NOW = datetime.now(UTC)
KEYS = [
    "at",
    "kind",
    "tenant",
    "issuer",
    "service",
    "hook",
    "hook_instance",
    "patient_id",
    "user_id",
    "outcome",
    "cards",
    "duration_ms",
    "detail",
    "rule_outcomes",
]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cds-service")
    add_parser(top.add_subparsers(dest="command", required=True))
    return top


def audit(*argv: str) -> int:
    return run(parser().parse_args(["audit", *argv]))


def entry(at: datetime, **fields: object) -> AuditEntry:
    values: dict[str, object] = {
        "kind": "hook",
        "tenant": "hospital-a",
        "issuer": "https://ehr.hospital-a.example.org",
        "service": "cms-drug-interactions",
        "hook": "order-select",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patient_id": "p1",
        "user_id": "Practitioner/example",
        "outcome": 200,
        "cards": 1,
        "duration_ms": 12.25,
        "detail": None,
    }
    values.update(fields)
    return AuditEntry(at=at, **values)  # type: ignore[arg-type]


ROWS = [
    entry(datetime(2021, 11, 27, 23, 59, 59, tzinfo=UTC), patient_id="p2", cards=0),
    entry(datetime(2021, 11, 28, 8, 0, tzinfo=UTC), outcome=412, cards=0, detail="412 prefetch"),
    entry(
        datetime(2021, 11, 28, 9, 30, 0, 250000, tzinfo=UTC),
        kind="feedback",
        tenant="hospital-b",
        hook=None,
        hook_instance=None,
        patient_id=None,
        user_id=None,
        cards=3,
    ),
    entry(
        datetime(2021, 11, 29, 0, 0, tzinfo=UTC),
        patient_id="p2",
        cards=5,
        rule_outcomes=(RuleStatus("a-rule", "2", "fired"), RuleStatus("b-rule", "1", "shadow")),
    ),
    entry(NOW - timedelta(hours=1), kind="discovery", tenant=None, patient_id=None, cards=0),
]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.db"

    async def fill() -> None:
        store = await AuditStore.open(f"sqlite:///{path}")
        try:
            for row in ROWS:
                await store.record(row)
        finally:
            await store.close()

    asyncio.run(fill())
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{path}")
    return path


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_newest_first(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit("--since", "2021-11-28") == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = json_lines(out)
    assert [list(line) for line in lines] == [KEYS] * 4
    assert [line["at"] for line in lines] == [
        ROWS[4].at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "2021-11-29T00:00:00.000000Z",
        "2021-11-28T09:30:00.250000Z",
        "2021-11-28T08:00:00.000000Z",
    ]
    assert lines[2] == {
        "at": "2021-11-28T09:30:00.250000Z",
        "kind": "feedback",
        "tenant": "hospital-b",
        "issuer": "https://ehr.hospital-a.example.org",
        "service": "cms-drug-interactions",
        "hook": None,
        "hook_instance": None,
        "patient_id": None,
        "user_id": None,
        "outcome": 200,
        "cards": 3,
        "duration_ms": 12.25,
        "detail": None,
        "rule_outcomes": None,
    }
    assert lines[1]["rule_outcomes"] == [
        {"rule": "a-rule", "version": "2", "status": "fired"},
        {"rule": "b-rule", "version": "1", "status": "shadow"},
    ]
    assert lines[3]["outcome"] == 412
    assert lines[3]["detail"] == "412 prefetch"


@pytest.mark.parametrize(
    ("argv", "cards"),
    [
        (["--since", "2021-11-28", "--until", "2021-11-28"], [3, 0]),  # that whole day
        (["--since", "2021-11-27T23:59:59Z", "--until", "2021-11-28T08:00:00Z"], [0]),
        (["--since", "2021-11-28T09:00:00+01:00", "--until", "2021-11-28T23:59:59Z"], [3, 0]),
        (["--since", "2021-11-28T09:30:00.250000"], [0, 5, 3]),  # naive means UTC
        (["--since", "2021-01-01", "--patient", "p2"], [5, 0]),
        (["--since", "2021-01-01", "--tenant", "hospital-b"], [3]),
        (["--since", "2021-01-01", "--tenant", "hospital-a", "--patient", "p1"], [0]),
        (["--since", "2021-01-01", "--limit", "2"], [0, 5]),
        (["--since", "2h"], [0]),
        (["--since", "90m", "--until", "30m"], [0]),
        (["--since", "1d", "--until", "2h"], []),
        (["--since", "2021-01-01", "--patient", "nobody"], []),
    ],
)
def test_filters(
    database: Path, capsys: pytest.CaptureFixture[str], argv: list[str], cards: list[int]
) -> None:
    assert audit(*argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert [line["cards"] for line in json_lines(out)] == cards


def test_table(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit("--since", "2021-11-28", "--until", "2021-11-28", "--format", "table") == 0
    out, err = capsys.readouterr()
    assert err == ""
    header, *lines = out.splitlines()
    assert header.split() == [
        "AT",
        "KIND",
        "TENANT",
        "SERVICE",
        "HOOK",
        "HOOK_INSTANCE",
        "PATIENT_ID",
        "USER_ID",
        "OUTCOME",
        "CARDS",
        "DURATION_MS",
        "DETAIL",
    ]
    assert [line.split() for line in lines] == [
        [
            "2021-11-28T09:30:00Z",
            "feedback",
            "hospital-b",
            "cms-drug-interactions",
            "-",
            "-",
            "-",
            "-",
            "200",
            "3",
            "12.2",
            "-",
        ],
        [
            "2021-11-28T08:00:00Z",
            "hook",
            "hospital-a",
            "cms-drug-interactions",
            "order-select",
            "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "p1",
            "Practitioner/example",
            "412",
            "0",
            "12.2",
            "412",
            "prefetch",
        ],
    ]
    # Columns are aligned: every column starts at the same offset on every line.
    assert lines[0].index("hospital-b") == lines[1].index("hospital-a") == header.index("TENANT")
    assert "ehr.hospital-a" not in out  # the issuer is left to the JSON format


def test_table_neutralises_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'evil.db'}"

    async def fill() -> None:
        store = await AuditStore.open(url)
        try:
            await store.record(entry(NOW, patient_id="p\x1b[31m\nx", user_id="u\x9b2J"))
        finally:
            await store.close()

    asyncio.run(fill())
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    assert audit("--since", "1h", "--format", "table") == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\x9b" not in table
    assert "p?[31m?x" in table and "u?2J" in table
    assert len(table.splitlines()) == 2
    assert audit("--since", "1h") == 0
    line = capsys.readouterr().out
    assert "\x1b" not in line and "\x9b" not in line
    assert json.loads(line)["patient_id"] == "p\x1b[31m\nx"


def test_no_records_is_success(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit("--since", "2999-01-01") == 0
    assert capsys.readouterr() == ("", "")
    assert audit("--since", "2999-01-01", "--format", "table") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [out.strip()]
    assert out.startswith("AT  ")


def test_empty_database_is_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'new' / 'fresh.db'}")
    assert audit("--since", "7d") == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday"], "invalid --since 'yesterday'"),
        (["--since", "2026-13-01"], "invalid --since '2026-13-01'"),
        (["--since", "24x"], "invalid --since '24x'"),
        (["--since", ""], "invalid --since ''"),
        (["--since=-5d"], "invalid --since '-5d'"),
        (["--since", "7d", "--until", "soon"], "invalid --until 'soon'"),
        (["--since", "2021-11-28", "--until", "2021-11-27"], "--until must be later than"),
        (["--since", "1h", "--until", "2h"], "--until must be later than"),
    ],
)
def test_bad_times_exit_2(
    database: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert audit(*argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err
    assert len(err.splitlines()) == 1


def test_bad_database_setting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", "mysql://user:secret@db/x")
    assert audit("--since", "1d") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "invalid setting CDS_DATABASE_URL" in err
    assert "secret" not in err


def test_unreachable_database_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1.
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql://user:secret@127.0.0.1:1/x")
    assert audit("--since", "1d") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "cannot read the audit trail" in err
    assert "secret" not in err and "127.0.0.1" not in err


@pytest.mark.parametrize(
    "argv", [[], ["--since", "1d", "--limit", "0"], ["--since", "1d", "--format", "csv"]]
)
def test_usage_errors_from_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["audit", *argv])
    assert exit_info.value.code == 2
    assert capsys.readouterr().out == ""


def test_parse_when() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_when("2026-11-28", option="--since", now=now) == datetime(2026, 11, 28, tzinfo=UTC)
    assert parse_when("2026-11-28", option="--until", now=now, end_of_day=True) == datetime(
        2026, 11, 29, tzinfo=UTC
    )
    assert parse_when("24h", option="--since", now=now) == now - timedelta(hours=24)
    assert parse_when("7d", option="--since", now=now) == now - timedelta(days=7)
    assert parse_when("30m", option="--since", now=now) == now - timedelta(minutes=30)
    assert parse_when("2w", option="--since", now=now) == now - timedelta(weeks=2)
    local = parse_when("2026-11-28T08:00:00-05:00", option="--since", now=now)
    assert local == datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    assert local.tzinfo is UTC
    assert parse_when("2026-11-28T08:00:00Z", option="--since", now=now).tzinfo is UTC
    naive = parse_when("2026-11-28T08:00", option="--since", now=now)
    assert naive == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert naive.utcoffset() == UTC.utcoffset(None)
    with pytest.raises(UsageError, match="--until"):
        parse_when("tomorrow", option="--until", now=now)
