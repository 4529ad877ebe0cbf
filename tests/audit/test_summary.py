"""Per-rule counts (`cds-service audit --by rule`): cards issued, audited outcomes and feedback,
over a window, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from cds_service.audit import AuditStore
from cds_service.audit.store import RuleStatus
from cds_service.audit.summary import Window, summarize
from cds_service.feedback.store import CardRule, FeedbackStore
from cds_service.wire.feedback import Feedback
from tests.audit.test_cli import audit, json_lines
from tests.audit.test_issued import card
from tests.audit.test_store import T0, entry

OLD = T0 - timedelta(days=30)


def overridden(uuid: str, code: str | None = None) -> Feedback:
    body: dict[str, object] = {
        "card": uuid,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-28T12:00:00Z",
    }
    if code is not None:
        body["overrideReason"] = {"reason": {"code": code, "system": "urn:x"}}
    return Feedback.model_validate(body)


async def fill(url: str) -> None:
    """Three calls in the window (one outside), their cards and outcomes, feedback on two."""
    audit_store = await AuditStore.open(url)
    feedback = await FeedbackStore.open(url)
    try:
        pneumo = RuleStatus("pneumococcal-vaccine-due", "2", "fired")
        await audit_store.record(
            entry(rule_outcomes=(pneumo, RuleStatus("new-rule", "1", "shadow"))),
            [card("c1")],
        )
        await audit_store.record(
            entry(rule_outcomes=(RuleStatus("pneumococcal-vaccine-due", "2", "suppressed"),)),
        )
        await audit_store.record(
            entry(service="allergy-documentation", rule_outcomes=()),
            [card("c2", service="allergy-documentation", rule_id="allergy-documentation")],
        )
        await audit_store.record(
            entry(at=OLD, rule_outcomes=(pneumo,)), [card("c0", issued_at=OLD)]
        )
        pneumo_card = CardRule("pneumococcal-vaccine-due", "2", "example-patient")
        await feedback.record(
            "preventive-care",
            [overridden("c1", "patient-declined"), overridden("c1")],
            received_at=T0,
            tenant="hospital-a",
            cards={"c1": pneumo_card},
        )
        await feedback.record(
            "preventive-care", [overridden("c0")], received_at=OLD, tenant="hospital-a"
        )
    finally:
        await feedback.close()
        await audit_store.close()


def test_counts_per_rule(audit_url: str) -> None:
    async def body() -> list[dict[str, object]]:
        await fill(audit_url)
        audit_store = await AuditStore.open(audit_url)
        feedback = await FeedbackStore.open(audit_url)
        try:
            window = Window(since=T0 - timedelta(days=7))
            issued, outcomes = await audit_store.rule_counts(window)
            counts = await feedback.counts_by_rule(since=window.since)
            assert await audit_store.rule_counts(Window(since=T0, tenant="other")) == ([], [])
        finally:
            await feedback.close()
            await audit_store.close()
        return [s.to_json() for s in summarize(issued, outcomes, counts)]

    zero = {"shadow": 0, "suppressed": 0, "skipped": 0, "error": 0, "timeout": 0}
    assert asyncio.run(body()) == [
        {
            "service": "allergy-documentation",
            "rule": "allergy-documentation",
            "version": "2",
            "cards": 1,
            **zero,
            "accepted": 0,
            "overridden": 0,
            "override_reasons": {},
        },
        {
            "service": "cms-drug-interactions",
            "rule": "new-rule",
            "version": "1",
            "cards": 0,
            **zero,
            "shadow": 1,
            "accepted": 0,
            "overridden": 0,
            "override_reasons": {},
        },
        {
            "service": "cms-drug-interactions",
            "rule": "pneumococcal-vaccine-due",
            "version": "2",
            "cards": 0,
            **zero,
            "suppressed": 1,
            "accepted": 0,
            "overridden": 0,
            "override_reasons": {},
        },
        {
            "service": "preventive-care",
            "rule": "pneumococcal-vaccine-due",
            "version": "2",
            "cards": 1,
            **zero,
            "accepted": 0,
            "overridden": 2,
            "override_reasons": {"none": 1, "patient-declined": 1},
        },
    ]


def test_audit_by_rule_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cds.db"
    asyncio.run(fill(url))
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    since = (T0 - timedelta(days=1)).isoformat()
    assert audit("--since", since, "--by", "rule") == 0
    lines = json_lines(capsys.readouterr().out)
    assert [(line["service"], line["rule"], line["cards"]) for line in lines] == [
        ("allergy-documentation", "allergy-documentation", 1),
        ("cms-drug-interactions", "new-rule", 0),
        ("cms-drug-interactions", "pneumococcal-vaccine-due", 0),
        ("preventive-care", "pneumococcal-vaccine-due", 1),
    ]
    assert audit("--since", since, "--by", "rule", "--patient", "nobody") == 0
    assert capsys.readouterr().out == ""
    # Everything since the old call: its card and the feedback without a rule count too.
    assert audit("--since", "60d", "--by", "rule", "--format", "table") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "SERVICE",
        "RULE",
        "VERSION",
        "CARDS",
        "SHADOW",
        "SUPPRESSED",
        "ERRORS",
        "ACCEPTED",
        "OVERRIDDEN",
        "OVERRIDE",
        "REASONS",
    ]
    last = "preventive-care pneumococcal-vaccine-due 2 2 0 0 0 0 2 none=1, patient-declined=1"
    assert table[-1].split() == last.split()
    assert ["preventive-care", "-", "-", "0", "0", "0", "0", "0", "1", "none=1"] in [
        line.split() for line in table
    ]
