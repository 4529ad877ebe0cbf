"""The package keeps the public names of the module it replaced."""

from __future__ import annotations

import pytest

import cds_service.rules.testing as testing
from cds_service.rules import lint


def test_every_public_name_is_there() -> None:
    for name in testing.__all__:
        assert getattr(testing, name) is not None, name
    assert testing.lint_rules is lint.lint_rules and testing.LintReport is lint.LintReport
    with pytest.raises(AttributeError):
        testing.no_such_name  # noqa: B018
