"""Every path evaluates a rule lazily: a binding is computed just before the first condition
that needs it, so conditions all/any never reach, and card-only bindings of a silent rule, cost
nothing; `eager` (display only) computes everything and decides the same, except that a binding
the lazy verdict never reaches can fail only eagerly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.rules.compiled import CompiledRule
from cds_service.rules.engine import RequestData, RuleOutcome, evaluate_rule
from cds_service.rules.service import evaluate_with_scores
from tests.rules.conftest import load_rules

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)

RULE = """\
prefetch:
  labs: Observation?patient={{context.patientId}}
let:
  count: "%labs.entry.count()"
  # single() on two or more items is an error: only computed when the second condition is reached
  only: "%labs.entry.resource.single().id"
  shown: "'card text ' + %count.toString()"
when:
  QUANTIFIER:
    - id: has-many
      fhirpath: "%count > 2"
    - id: only-is-a
      fhirpath: "%only = 'a'"
card:
  summary: "{{shown}}"
  indicator: info
  source: {label: s}
"""


def _rule(tmp_path: Path, quantifier: str) -> CompiledRule:
    return load_rules(tmp_path, {"lazy": RULE.replace("QUANTIFIER", quantifier)})["lazy"]


def _labs(*ids: str) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in ids],
    }


def _data(*ids: str) -> RequestData:
    return RequestData({"patientId": "p"}, {"labs": _labs(*ids)}, now=NOW)


def test_a_condition_all_never_reaches_computes_nothing(tmp_path: Path) -> None:
    rule = _rule(tmp_path, "all")
    outcome = evaluate_rule(rule, _data("a"))  # one lab: `has-many` is false, `all` stops there
    assert outcome.status == "silent"
    assert outcome.conditions == {"has-many": False}
    assert set(outcome.bindings) == {"count"}


def test_a_binding_that_fails_only_matters_when_its_condition_is_reached(tmp_path: Path) -> None:
    rule = _rule(tmp_path, "all")
    # Two labs: `has-many` is false, so `all` is decided and `only` (an error on two items) is
    # never computed.
    outcome = evaluate_rule(rule, _data("a", "b"))
    assert outcome.status == "silent"
    assert "only" not in outcome.bindings
    # Eager evaluation computes `only` and reports its error.
    eager = evaluate_rule(rule, _data("a", "b"), eager=True)
    assert eager.status == "error"


@pytest.mark.parametrize(
    ("quantifier", "ids"), [("all", ("a",)), ("any", ("a",)), ("all", ()), ("any", ("a", "b", "c"))]
)
def test_lazy_and_eager_decide_the_same(
    tmp_path: Path, quantifier: str, ids: tuple[str, ...]
) -> None:
    rule = _rule(tmp_path, quantifier)
    lazy = evaluate_rule(rule, _data(*ids))
    eager = evaluate_rule(rule, _data(*ids), eager=True)
    assert (lazy.status, lazy.card is None) == (eager.status, eager.card is None)
    if lazy.status == "error":  # both stopped at the failing binding, at different points
        return
    for name, value in lazy.bindings.items():
        assert eager.bindings[name] == value
    for condition, value in lazy.conditions.items():
        assert eager.conditions[condition] == value


def test_the_card_bindings_are_computed_when_the_rule_fires(tmp_path: Path) -> None:
    rule = _rule(tmp_path, "any")
    outcome = evaluate_rule(rule, _data("a"))  # one lab: `only` is 'a', the rule fires
    assert outcome.status == "fired"
    assert outcome.conditions == {"has-many": False, "only-is-a": True}
    assert set(outcome.bindings) == {"count", "only", "shown"}


SCORED = """\
prefetch:
  labs: Observation?patient={{context.patientId}}
scores: [ascvd]
let:
  count: "%labs.entry.count()"
  risk: "%scores.ascvd.value"
when:
  all:
    - id: has-labs
      fhirpath: "%count > 0"
    - id: high-risk
      fhirpath: "%risk >= 7.5"
card:
  summary: "risk {{risk}}"
  indicator: info
  source: {label: s}
"""


def _scored(tmp_path: Path) -> CompiledRule:
    return load_rules(tmp_path, {"scored": SCORED})["scored"]


def _with_scores(rule: CompiledRule, data: RequestData) -> tuple[list[RuleOutcome], list[str]]:
    asked: list[str] = []

    async def provide(needing: Sequence[CompiledRule]) -> dict[str, Any]:
        asked.extend(r.id for r in needing)
        return {"ascvd": {"value": 12.5, "unit": "%"}}

    outcomes = asyncio.run(evaluate_with_scores([rule], data, provide, budget_seconds=5))
    return outcomes, asked


def test_scores_are_computed_only_for_rules_that_reach_them(tmp_path: Path) -> None:
    rule = _scored(tmp_path)
    # No labs: `has-labs` rules the patient out before `%scores` is read; nothing is computed.
    outcomes, asked = _with_scores(rule, _data())
    assert asked == [] and outcomes[0].status == "silent"
    # With labs the rule reaches the score: it is computed for this rule, and the rule decides
    # as it would have with the score given up front.
    outcomes, asked = _with_scores(rule, _data("a"))
    assert asked == ["scored"]
    assert outcomes[0].status == "fired" and outcomes[0].card is not None
    assert outcomes[0].card.summary == "risk 12.5"
    upfront = _data("a")
    upfront.provide_scores({"ascvd": {"value": 12.5, "unit": "%"}})
    eager = evaluate_rule(rule, upfront, eager=True)
    assert (eager.status, eager.card.summary if eager.card else None) == ("fired", "risk 12.5")
    assert eager.conditions == outcomes[0].conditions


def test_a_rule_stopped_for_scores_resumes_with_its_bindings(tmp_path: Path) -> None:
    rule = _scored(tmp_path)
    count = next(b for b in rule.bindings if b.name == "count")
    assert count.path is not None
    calls = []
    original = count.path._fn

    def counting(root: Any, variables: Any) -> list[Any]:
        calls.append(1)
        return original(root, variables)

    object.__setattr__(count.path, "_fn", counting)
    outcomes, asked = _with_scores(rule, _data("a", "b"))
    assert asked == ["scored"] and outcomes[0].status == "fired"
    assert outcomes[0].bindings["count"] == [2]
    assert len(calls) == 1  # computed before the stop, not again after it


def test_scores_provided_after_the_variables_were_built_replace_only_the_scores() -> None:
    """The variables every rule starts from are built once a call; the scores, provided once
    the rules that stopped for them are known, replace the pending ones and nothing else."""
    data = _data("a")
    before = data.variables()
    assert before["scores"] == {}
    data.provide_scores({"ascvd": {"value": 12.5, "unit": "%"}})
    after = data.variables()
    assert after["scores"] == {"ascvd": {"value": 12.5, "unit": "%"}}
    assert before["scores"] == {}  # a rule's copy from before is its own
    # the same values (fhirpathpy's dates compare by their text)
    assert {k: str(v) for k, v in after.items() if k != "scores"} == {
        k: str(v) for k, v in before.items() if k != "scores"
    }
    data.provide_scores({"ascvd": {"value": 20.0, "unit": "%"}})
    assert data.variables()["scores"]["ascvd"]["value"] == 20.0
