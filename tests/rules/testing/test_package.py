"""The package keeps the public names of the module it replaced."""

from __future__ import annotations

import pytest

import cds_service.rules.testing as testing


def test_every_public_name_is_there() -> None:
    for name in testing.__all__:
        assert getattr(testing, name) is not None, name
    with pytest.raises(AttributeError):
        testing.no_such_name  # noqa: B018
