"""Plugins through entry points: what a good one adds, and every bad one stopping the load with
its name (the example package's own tests, run by `make plugin-example`, install a real one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint

import pytest

from cds_service import plugins as plugin_module
from cds_service.plugins import FUNCTIONS, SCORES, SERVICES, PluginError, plugins
from cds_service.rules.fhirpath import compile_path
from cds_service.rules.plugin_functions import plugin_functions
from cds_service.scores import build_scores
from cds_service.services.plugin_services import plugin_services


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[EntryPoint]]]:
    """Fake installed entry points, by group; the caches cleared before and after."""
    declared: dict[str, list[EntryPoint]] = {SCORES: [], FUNCTIONS: [], SERVICES: []}

    def entry_points(*, group: str) -> list[EntryPoint]:
        return declared.get(group, [])

    monkeypatch.setattr(plugin_module, "entry_points", entry_points)
    plugins.cache_clear()
    plugin_functions.cache_clear()
    yield declared
    plugins.cache_clear()
    plugin_functions.cache_clear()


def _entry(name: str, target: str, group: str) -> EntryPoint:
    return EntryPoint(name, f"tests.plugin_fakes:{target}", group)


def test_a_plugin_score_joins_the_registry(installed: dict[str, list[EntryPoint]]) -> None:
    installed[SCORES].append(_entry("good-score", "GoodScore", SCORES))
    scores = build_scores()
    assert "good-score" in scores and "ascvd" in scores
    assert scores["good-score"].compute({}).value == 1.0


def test_a_plugin_function_in_an_expression(installed: dict[str, list[EntryPoint]]) -> None:
    installed[FUNCTIONS].append(_entry("double", "DOUBLE", FUNCTIONS))
    compiled = compile_path("(21).double()", functions=plugin_functions())
    assert compiled({}, {}) == [42]


def test_no_plugins_no_change(installed: dict[str, list[EntryPoint]]) -> None:
    assert plugin_services() == [] and plugin_functions() == {}
    assert set(build_scores()) == {
        "ascvd", "cha2ds2-vasc", "has-bled", "ada-diabetes-risk", "qsofa", "egfr"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("group", "name", "target", "message"),
    [
        (SCORES, "ascvd", "ClashingScore", "the name 'ascvd' is already a score"),
        (SCORES, "not-a-score", "NotAScore", "not a risk score (no title, unit, specs"),
        (SCORES, "other-name", "GoodScore", "its name is 'good-score'"),
        (SCORES, "missing", "Nowhere", "does not load: AttributeError"),
        (FUNCTIONS, "where", "SHADOWING", "'where' is already a FHIRPath function"),
        (FUNCTIONS, "memberOf", "SHADOWING", "'memberOf' is already a FHIRPath function"),
        (FUNCTIONS, "nofn", "NO_FN", "not a function entry"),
        (FUNCTIONS, "badarity", "BAD_ARITY", "'arity' maps an argument count"),
        (SERVICES, "wrong", "wrong_services", "must return a list of ServiceDefinition"),
        (SERVICES, "notcallable", "DOUBLE", "not a callable returning services"),
    ],
)
def test_a_bad_plugin_stops_the_load_by_name(
    installed: dict[str, list[EntryPoint]], group: str, name: str, target: str, message: str
) -> None:
    installed[group].append(_entry(name, target, group))
    loaders: dict[str, Callable[[], object]] = {
        SCORES: build_scores,
        FUNCTIONS: plugin_functions,
        SERVICES: plugin_services,
    }
    with pytest.raises(PluginError, match=f"plugin '{name}' \\({group}") as raised:
        loaders[group]()
    assert message in str(raised.value)


def test_a_name_declared_twice(installed: dict[str, list[EntryPoint]]) -> None:
    installed[SERVICES] += [
        _entry("same", "no_services", SERVICES),
        _entry("same", "no_services", SERVICES),
    ]
    with pytest.raises(PluginError, match=r"'same' .* is declared by both"):
        plugins(SERVICES)
