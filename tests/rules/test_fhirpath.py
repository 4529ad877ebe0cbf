"""What an expression refers to is read from its syntax tree, not its text."""

from __future__ import annotations

import pytest

from cds_service.rules.fhirpath import Call, FhirPathError, compile_path
from cds_service.rules.valuesets import member_of_function

FUNCTIONS = member_of_function({})


def test_variables_members_and_calls_come_from_the_syntax_tree() -> None:
    path = compile_path(
        "%scores.`cha2ds2-vasc`.value > 2 and (%meds).entry.exists() "
        "and code.memberOf('oral-nsaids')",
        functions=FUNCTIONS,
    )
    assert path.variables == {"scores", "meds"}
    assert path.members == {("scores", "cha2ds2-vasc"), ("meds", "entry")}
    assert path.calls == (Call("exists", ()), Call("memberOf", ("oral-nsaids",)))
    assert path.functions == {"exists", "memberOf"}


def test_string_literals_are_not_references() -> None:
    # A regular expression over the text took each of these for a variable, a score or a call.
    path = compile_path("'%x' = '%scores.frailty' and 'memberOf(statins)' != 'y'")
    assert (path.variables, path.members, path.calls) == (frozenset(), frozenset(), ())


def test_a_function_of_a_variable_is_not_a_member() -> None:
    path = compile_path("%scores.exists()")
    assert path.members == frozenset()
    assert path.calls == (Call("exists", ()),)


def test_whitespace_around_the_dot_is_still_a_member() -> None:
    assert compile_path("%scores .frailty").members == {("scores", "frailty")}


def test_string_arguments_are_decoded_and_others_are_none() -> None:
    expression = r"a.memberOf('it\'s') and b.memberOf(%vs) and c.memberOf()"
    path = compile_path(expression, functions=FUNCTIONS)
    assert [c.literals for c in path.calls] == [("it's",), (None,), ()]


def test_a_quoted_variable_name_is_refused() -> None:
    # fhirpathpy parses %'x' but raises on every evaluation of it.
    with pytest.raises(FhirPathError, match="not %'name'"):
        compile_path("%'scores'.value")
