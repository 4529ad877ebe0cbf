"""A broken rule file is an error at its `file:line:col`, never an exception (issue 20).

`rules lint` and `rules test` once stopped with a bare AssertionError on a FHIRPath syntax error
under `let:`. Here: YAML that PyYAML cannot build into values (tags, impossible dates, an alias
inside itself, nesting past any authored file).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from cds_service.issues import RuleIssue
from cds_service.rules.cli import main
from cds_service.rules.lint import lint_rules
from cds_service.rules.ruleset import load_ruleset
from tests.rules.conftest import minimal_rule

LET = 'medicationCount: "%activeMedications.entry.count()"'  # line 13 of the minimal rule


def write_probe(root: Path, old: str = "", new: str = "") -> Path:
    """The minimal rule as `probe.yaml`, `old` replaced by `new`."""
    text = minimal_rule("probe")
    assert old in text
    path = root / "order-select" / "probe.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def located(issues: Iterable[RuleIssue]) -> list[tuple[int, int, str, str]]:
    return [(i.line, i.col, i.field, i.message) for i in issues]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "medicationCount: ",
            "medicationCount: !foo ",
            (13, 20, "let.medicationCount", "could not determine a constructor for the tag '!foo'"),
        ),
        (
            "version: 1",
            "version: 2026-02-30",
            (3, 10, "version", "not a valid !!timestamp (day is out of range for month)"),
        ),
        ("version: 1", "version: !!int one", (3, 10, "version", "not a valid !!int")),
        ("version: 1", "version: !!timestamp soon", (3, 10, "version", "not a valid !!timestamp")),
        (
            "references: [https://example.org/reference]",
            "references: &refs [*refs]",
            (9, 13, "references[0]", "an alias (*name) inside the value its anchor"),
        ),
        (
            LET,
            "medicationCount: " + "[" * 150 + "]" * 150,
            (13, 118, "let.medicationCount" + "[0]" * 98, "nested deeper than 100 levels"),
        ),
        # The issue's own examples, FHIRPath errors under `let:` (a binding's key is its place).
        (
            "entry.count()",
            "entry.count().toString().substring(0, 10",
            (13, 3, "let.medicationCount", "FHIRPath syntax error: no viable alternative"),
        ),
        (
            "%activeMedications.entry.count()",
            "%activeMedications.frist()",
            (13, 3, "let.medicationCount", "unknown function frist()"),
        ),
    ],
    ids=[
        "unknown-tag",
        "impossible-date",
        "int-tag",
        "timestamp-tag",
        "alias-inside-itself",
        "deep-nesting",
        "unclosed-call",
        "unknown-function",
    ],
)
def test_a_broken_value_is_one_located_error_for_the_loader_lint_and_test(
    empty_rules: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    expected: tuple[int, int, str, str],
) -> None:
    path = write_probe(empty_rules, old, new)
    loaded = load_ruleset(empty_rules, [])
    [(line, col, field, message)] = located(loaded.issues)
    assert (line, col, field) == expected[:3]
    assert expected[3] in message
    assert "probe" not in loaded.rules
    assert located(lint_rules(empty_rules).errors) == located(loaded.issues)
    assert main(["rules", "lint", str(empty_rules)]) == 1
    assert f"{path}:{line}:{col}: {field}: " in capsys.readouterr().out
    assert main(["rules", "test", str(empty_rules)]) == 1
    assert f"{path}:{line}:{col}: {field}: " in capsys.readouterr().out
