"""pytest collects rule tests: one item per case of every `*.test.yaml`, one per broken file.

Enable with `-p cds_service.rules.pytest_plugin` (pyproject `addopts`) and put the rules directory
on `testpaths`. A rules directory is recognised by its `_services.yaml`; YAML elsewhere, and the
value sets and fixtures inside it, are never collected as tests. Items:

- `rules/<hook>/<id>.test.yaml::<case name>`: runs the case as `cds-service rules test` does;
- `rules/<hook>/<id>.test.yaml::lint`: the test file itself has problems (none of its cases run);
- `rules/<hook>/<id>.yaml::lint` (or `_services.yaml`, a value set): the file does not load,
  so lint errors fail the pytest run too.

The rule set of a directory is loaded once per session.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cds_service.issues import RuleIssue
from cds_service.rules.ruleset import SERVICES_FILE, RuleSet, load_ruleset
from cds_service.rules.testing.model import TEST_SUFFIX
from cds_service.rules.testing.plan import PlannedCase, TestFilePlan, plan_tests
from cds_service.rules.testing.report import RuleTestFailure
from cds_service.rules.testing.runner import known_scores, run_case

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr, TracebackStyle

__all__ = ["RuleCaseItem", "RuleFileLint", "RuleLintItem", "RuleTestYaml", "pytest_collect_file"]


@dataclass(slots=True)
class _Rules:
    """One rules directory, loaded once: rule set, test plans, files that do not load."""

    ruleset: RuleSet
    plans: dict[Path, TestFilePlan]
    broken: dict[Path, list[RuleIssue]]


_LOADED = pytest.StashKey[dict[Path, _Rules]]()


def _rules_root(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / SERVICES_FILE).is_file():
            return parent
    return None


def _rules(config: pytest.Config, root: Path) -> _Rules:
    loaded = config.stash.setdefault(_LOADED, {})
    if root not in loaded:
        ruleset = load_ruleset(root, known_scores())
        plans = {plan.path.resolve(): plan for plan in plan_tests(root, ruleset)}
        broken: dict[Path, list[RuleIssue]] = {}
        for issue in ruleset.errors:
            broken.setdefault(issue.path.resolve(), []).append(issue)
        loaded[root] = _Rules(ruleset, plans, broken)
    return loaded[root]


def _display(path: Path, config: pytest.Config) -> Path:
    try:
        return Path(os.path.relpath(path, config.rootpath))
    except ValueError:  # another drive (Windows)
        return path


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect `*.test.yaml` cases and broken YAML files under a rules directory."""
    if file_path.suffix != ".yaml":
        return None
    root = _rules_root(file_path)
    if root is None:
        return None
    relative = file_path.relative_to(root).parts
    if file_path.name.endswith(TEST_SUFFIX):
        if any(part.startswith(("_", ".")) for part in relative):
            return None
        collected: pytest.Collector = RuleTestYaml.from_parent(parent, path=file_path, root=root)
        return collected
    if file_path.resolve() in _rules(parent.config, root).broken:
        lint: pytest.Collector = RuleFileLint.from_parent(parent, path=file_path, root=root)
        return lint
    return None


class RuleTestYaml(pytest.File):
    """A `*.test.yaml`: one item per case, or one `lint` item when the file has errors."""

    def __init__(self, *, root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rules_root = root

    def collect(self) -> Iterator[pytest.Item]:
        rules = _rules(self.config, self.rules_root)
        plan = rules.plans.get(self.path.resolve())
        if plan is None:
            return
        if plan.errors:
            yield RuleLintItem.from_parent(self, name="lint", issues=plan.errors)
            return
        for case in plan.cases:
            yield RuleCaseItem.from_parent(self, name=case.case.name, planned=case)


class RuleFileLint(pytest.File):
    """A rule (or services, value set) file that does not load: one failing `lint` item."""

    def __init__(self, *, root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rules_root = root

    def collect(self) -> Iterator[pytest.Item]:
        issues = _rules(self.config, self.rules_root).broken.get(self.path.resolve(), [])
        yield RuleLintItem.from_parent(self, name="lint", issues=issues)


class _RuleItem(pytest.Item):
    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: TracebackStyle | None = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, RuleTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


class RuleCaseItem(_RuleItem):
    """One case of a rule test file."""

    def __init__(self, *, planned: PlannedCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned

    def runtest(self) -> None:
        assert isinstance(self.parent, RuleTestYaml)
        rules = _rules(self.config, self.parent.rules_root)
        result = run_case(self.planned, rules.ruleset)
        if not result.ok:
            shown = dataclasses.replace(result, path=_display(result.path, self.config))
            raise RuleTestFailure(shown.message(diff=True))

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, self.planned.line - 1, f"{self.planned.key}"


class RuleLintItem(_RuleItem):
    """A file with load errors; fails with every one of them."""

    def __init__(self, *, issues: list[RuleIssue], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issues = issues

    def runtest(self) -> None:
        if self.issues:
            shown = [
                dataclasses.replace(i, path=_display(i.path, self.config)) for i in self.issues
            ]
            raise RuleTestFailure("\n".join(str(i) for i in shown))

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, None, f"lint {self.path.name}"
