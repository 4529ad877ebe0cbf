"""Every case of the HL7 FHIRPath R4 suite against the evaluator rules use (see suite.py)."""

from __future__ import annotations

import contextlib
import io

import pytest

from tests.fhirpath_suite.report import render
from tests.fhirpath_suite.suite import DOC, Case, known_failures, load_cases, run_all, run_case

CASES = load_cases()
KNOWN = known_failures()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the suite's trace() cases print
        outcome = run_case(case)
    if case.id in KNOWN:
        assert outcome.status == "failed", (
            f"{case.id} is listed in known_failures.txt but is now {outcome.status}: remove it"
        )
    else:
        assert outcome.status != "failed", f"{case.expression}: {outcome.detail}"
    if outcome.compiled:  # the closures answer as fhirpathpy's interpreter does
        assert outcome.same_as_interpreter, f"{case.expression}: compiled and interpreted differ"


def test_most_of_the_suite_runs_compiled() -> None:
    """The compiled subset covers what the suite exercises, but for the constructs it names."""
    with contextlib.redirect_stdout(io.StringIO()):
        outcomes = [outcome for _, outcome in run_all()]
    compiled = [o for o in outcomes if o.compiled]
    assert len(compiled) >= 560  # of 935; the others are listed in docs/fhirpath-conformance.md
    assert all(o.same_as_interpreter for o in compiled)
    reasons = {o.not_compiled for o in outcomes if not o.compiled}
    assert any(r and "is not compiled" in r for r in reasons)


def test_known_failures_name_real_cases_with_reasons() -> None:
    ids = {case.id for case in CASES}
    assert set(KNOWN) <= ids, sorted(set(KNOWN) - ids)
    assert all(KNOWN.values())


def test_clock_cases_pass_as_percent_now() -> None:
    """The suite's now()/today() cases are refused (rules read the frozen %now); written with
    %now/%today, evaluated with the clock as the engine renders it, they all pass."""
    clock = [case for case in CASES if "now()" in case.expression or "today()" in case.expression]
    assert len(clock) >= 8
    for case in clock:
        outcome = run_case(case)
        assert outcome.status == "refused", case.id
        assert outcome.would_pass, f"{case.id}: {case.expression}"


def test_conformance_report_is_current() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        text = render(run_all(), run_all(patched=False), KNOWN)
    assert DOC.read_text(encoding="utf-8") == text, "run `make fhirpath-conformance`"
