"""The one wall clock, and a frozen one for tests.

Everything that needs the current time takes a `Clock` (`cds_service.types`): the app gets one in
`create_app(clock=...)` and hands it on (`AppState.clock`, the score provider, the audit writer);
a command-line entry point creates `system_clock` once at its top. Only this module reads the
wall clock, so a frozen clock freezes the whole service.

Example::

    app = create_app(settings, clock=frozen_clock(datetime(2026, 11, 28, 12, tzinfo=UTC)))
"""

from __future__ import annotations

from datetime import UTC, datetime

from cds_service.types import Clock

__all__ = ["frozen_clock", "system_clock"]


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def frozen_clock(at: datetime) -> Clock:
    """A clock that always answers `at` (naive values are taken as UTC)."""
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return lambda: moment
