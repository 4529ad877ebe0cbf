"""Temporary rules directories built from snapshots in `data/`, so these tests do not move when
the rule pack under rules/ is edited: the services, the two value sets and the NSAID rule as
bundled, and the proposed test file of that rule. (`data/` holds no `_services.yaml`, so the
pytest plugin never takes it for a rules directory.)"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from cds_service.rules.compiled import CompiledRule
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_RULE = "nsaid-with-anticoagulant"

MINIMAL_RULE = """\
schema: cds-rule/1
id: {id}
version: 1
status: active
hook: order-select
service: medication-safety
title: A rule for the tooling tests
description: Fires when the patient has active medications.
references: [https://example.org/reference]
prefetch:
  activeMedications: MedicationRequest?patient={{{{context.patientId}}}}&status=active
let:
  medicationCount: "%activeMedications.entry.count()"
when:
  all:
    - id: has-medications
      fhirpath: "%medicationCount > 0"
card:
  summary: "{{{{medicationCount}}}} active medications"
  indicator: info
  source: {{label: tooling tests}}
"""


def minimal_rule(rule_id: str) -> str:
    """A valid order-select rule named `rule_id` (tests break it by string replacement)."""
    return MINIMAL_RULE.format(id=rule_id)


def make_rules_dir(base: Path) -> Path:
    """`base/rules` with the services and value sets and no rules."""
    root = base / "rules"
    root.mkdir(parents=True)
    shutil.copy(DATA / "services.yaml", root / "_services.yaml")
    shutil.copytree(DATA / "valuesets", root / "_valuesets")
    (root / "order-select").mkdir()
    return root


def add_sample_rule(root: Path, *, with_tests: bool = True) -> Path:
    """Copy the NSAID rule (and its proposed test file) into `root`; returns the rule."""
    rule = root / "order-select" / f"{SAMPLE_RULE}.yaml"
    shutil.copy(DATA / f"{SAMPLE_RULE}.yaml", rule)
    if with_tests:
        shutil.copy(DATA / f"{SAMPLE_RULE}.test.yaml", rule.with_name(f"{SAMPLE_RULE}.test.yaml"))
    return rule


@pytest.fixture
def empty_rules(tmp_path: Path) -> Path:
    return make_rules_dir(tmp_path)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A rules directory with the sample rule and its test file."""
    root = make_rules_dir(tmp_path)
    add_sample_rule(root)
    return root


_HEADER = """\
schema: cds-rule/1
id: {id}
version: 1
status: active
hook: patient-view
service: svc
title: t
description: d
references: [https://example.org]
"""


def value_set(set_id: str, *codes: str, system: str = "http://loinc.org") -> str:
    """A ValueSet file's YAML: `set_id` expanded to `codes` in `system`."""
    lines = "".join(f"    - {{system: '{system}', code: '{code}'}}\n" for code in codes)
    return f"resourceType: ValueSet\nid: {set_id}\nexpansion:\n  contains:\n{lines}"


def load_rules(
    root: Path, rules: Mapping[str, str], value_sets: Mapping[str, str] | None = None
) -> dict[str, CompiledRule]:
    """Write a rules directory under `root` (service `svc`, the `value_sets` by id, and the
    patient-view `rules` by id: each text from `prefetch:` on, the header is written here; files
    already there are replaced) and load it; any load error fails the test."""
    (root / "_services.yaml").write_text(
        "schema: cds-services/1\nservices:\n  svc: {title: S, description: D}\n"
    )
    texts = {rule_id: _HEADER.format(id=rule_id) + body for rule_id, body in rules.items()}
    for folder, files in (("_valuesets", value_sets or {}), ("patient-view", texts)):
        (root / folder).mkdir(exist_ok=True)
        for name, text in files.items():
            (root / folder / f"{name}.yaml").write_text(text)
    ruleset = load_ruleset(root, known_score_names())
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    return {rule_id: ruleset.rules[rule_id] for rule_id in rules}
