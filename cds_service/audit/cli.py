"""`cds-service audit --since WHEN [--until WHEN] [--patient ID] [--tenant T] [--limit N]
[--by rule] [--format json|table]`.

Prints the audit rows of the database in ``CDS_DATABASE_URL``, newest first; with ``--by rule``,
one line per rule (and version) of each service instead: what it did and the feedback it got in
the window (see "Per rule" below). ``WHEN`` is a date
(``2026-11-28``), an ISO 8601 date-time (``2026-11-28T08:00:00Z``; without an offset it is UTC) or
a time ago: a number followed by ``m``, ``h``, ``d`` or ``w`` (``90m``, ``24h``, ``7d``, ``2w``).
``--since`` is inclusive and a date means the start of that day (UTC); ``--until`` is exclusive
and a date means the end of that day, so ``--since 2026-11-28 --until 2026-11-28`` is that day.

``--format json`` (the default) prints one JSON object per line with the snake_case keys ``at``
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``kind``, ``tenant``, ``issuer``, ``service``, ``hook``,
``hook_instance``, ``patient_id``, ``user_id``, ``outcome``, ``cards``, ``duration_ms``,
``detail`` and ``rule_outcomes`` (``[{"rule", "version", "status"}]``: a rule service's rules
that did not stay silent, shadow and suppressed ones included; absent values are null).
``--format table`` prints a header and one aligned line per row, without the issuer and the rule
outcomes; absent values show as ``-``.

Per rule (``--by rule``; ``--limit`` does not apply): one line per service, rule and version with
``cards`` (cards issued; a built-in service's cards under the service's id), ``shadow``,
``suppressed``, ``skipped``, ``error`` and ``timeout`` (rule outcomes from the audit rows),
``accepted`` and ``overridden`` (feedback received in the window) and ``override_reasons``
(overrides by reason code, ``none`` without one), sorted by service, rule and version; JSON lines
by default, a table with ``--format table``. ``--tenant`` and ``--patient`` filter all of them.

Exit status 0, also when nothing matches (json prints nothing, table only its header); 2 with a
message on stderr for a bad ``--since`` or ``--until`` (or one after the other) or a bad setting;
1 when the database cannot be read (the message names only the kind of error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cds_service.audit.store import AuditEntry, AuditStore
from cds_service.audit.summary import RuleSummary, Window, summarize
from cds_service.clock import system_clock
from cds_service.config import load_settings
from cds_service.exceptions import ConfigurationError
from cds_service.feedback.store import FeedbackStore

__all__ = ["add_parser", "entry_json", "format_rule_table", "format_table", "parse_when", "run"]

_RELATIVE = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TABLE_COLUMNS = (
    "at",
    "kind",
    "tenant",
    "service",
    "hook",
    "hook_instance",
    "patient_id",
    "user_id",
    "outcome",
    "cards",
    "duration_ms",
    "detail",
)


class UsageError(Exception):
    """Bad command-line input; exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``audit``."""
    parser = subparsers.add_parser(
        "audit",
        help="list the audit trail",
        description="List audit rows (hook, feedback and discovery calls), newest first.",
        epilog=(
            "WHEN: a date (2026-11-28), an ISO date-time (2026-11-28T08:00:00Z, UTC if no "
            "offset) or a time ago (90m, 24h, 7d, 2w). --since is inclusive, --until exclusive; "
            "a date means the start of the day for --since and its end for --until."
        ),
    )
    parser.add_argument(
        "--since", dest="audit_since", metavar="WHEN", required=True, help="earliest time"
    )
    parser.add_argument("--until", dest="audit_until", metavar="WHEN", help="latest time")
    parser.add_argument("--patient", dest="audit_patient", metavar="ID", help="patient id")
    parser.add_argument("--tenant", dest="audit_tenant", metavar="T", help="tenant id")
    parser.add_argument(
        "--limit",
        dest="audit_limit",
        metavar="N",
        type=_positive_int,
        default=1000,
        help="at most N rows, the newest (default 1000)",
    )
    parser.add_argument(
        "--by",
        dest="audit_by",
        choices=("rule",),
        help="one line per rule: cards issued, shadow and suppressed outcomes, feedback",
    )
    parser.add_argument(
        "--format",
        dest="audit_format",
        choices=("json", "table"),
        default="json",
        help="JSON lines (default) or an aligned table",
    )


def parse_when(text: str, *, option: str, now: datetime, end_of_day: bool = False) -> datetime:
    """An aware UTC datetime from a date, an ISO date-time or a time ago such as ``24h``."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise UsageError(
            f"invalid {option} {text!r}: expected a date (2026-11-28), an ISO date-time "
            "(2026-11-28T08:00:00Z) or a time ago (24h, 7d)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The JSON object printed for one row (snake_case keys, every audit field)."""
    return {
        "at": _iso(entry.at),
        "kind": entry.kind,
        "tenant": entry.tenant,
        "issuer": entry.issuer,
        "service": entry.service,
        "hook": entry.hook,
        "hook_instance": entry.hook_instance,
        "patient_id": entry.patient_id,
        "user_id": entry.user_id,
        "outcome": entry.outcome,
        "cards": entry.cards,
        "duration_ms": entry.duration_ms,
        "detail": entry.detail,
        "rule_outcomes": [
            {"rule": o.rule_id, "version": o.rule_version, "status": o.status}
            for o in entry.rule_outcomes
        ]
        or None,
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    # Values come from callers: never let one move the cursor or recolour the operator's terminal.
    return "".join(c if c.isprintable() else "?" for c in text) or "-"


def format_table(entries: Sequence[AuditEntry]) -> str:
    """A header and one line per row, columns aligned, separated by two spaces."""
    rows = [[c.upper() for c in _TABLE_COLUMNS]]
    for entry in entries:
        data = entry_json(entry)
        data["at"] = entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data["duration_ms"] = f"{entry.duration_ms:.1f}"
        rows.append([_cell(data[c]) for c in _TABLE_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


_RULE_COLUMNS = (
    ("service", "SERVICE"),
    ("rule", "RULE"),
    ("version", "VERSION"),
    ("cards", "CARDS"),
    ("shadow", "SHADOW"),
    ("suppressed", "SUPPRESSED"),
    ("errors", "ERRORS"),
    ("accepted", "ACCEPTED"),
    ("overridden", "OVERRIDDEN"),
    ("reasons", "OVERRIDE REASONS"),
)


def format_rule_table(rules: Sequence[RuleSummary]) -> str:
    """A header and one aligned line per rule (errors: `error` and `timeout` outcomes)."""
    rows = [[title for _, title in _RULE_COLUMNS]]
    for rule in rules:
        data = rule.to_json()
        data["errors"] = data["error"] + data["timeout"]
        data["reasons"] = ", ".join(f"{k}={v}" for k, v in data["override_reasons"].items())
        rows.append([_cell(data[name]) for name, _ in _RULE_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_RULE_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


async def _by_rule(database_url: str, window: Window) -> list[RuleSummary]:
    audit = await AuditStore.open(database_url)
    try:
        feedback = await FeedbackStore.open(database_url)
        try:
            issued, outcomes = await audit.rule_counts(window)
            counts = await feedback.counts_by_rule(
                since=window.since,
                until=window.until,
                tenant=window.tenant,
                patient=window.patient,
            )
        finally:
            await feedback.close()
    finally:
        await audit.close()
    return summarize(issued, outcomes, counts)


async def _query(
    database_url: str,
    *,
    since: datetime,
    until: datetime | None,
    patient: str | None,
    tenant: str | None,
    limit: int,
) -> list[AuditEntry]:
    store = await AuditStore.open(database_url)
    try:
        return await store.query(
            since=since, until=until, patient=patient, tenant=tenant, limit=limit
        )
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    """Print the matching audit rows; the exit status."""
    now = system_clock()  # the command's one reading of the wall clock
    try:
        since = parse_when(args.audit_since, option="--since", now=now)
        until = (
            None
            if args.audit_until is None
            else parse_when(args.audit_until, option="--until", now=now, end_of_day=True)
        )
        if until is not None and until <= since:
            raise UsageError("--until must be later than --since")
        database_url = load_settings().database_url
        if args.audit_by == "rule":
            window = Window(since, until, args.audit_tenant, args.audit_patient)
            rules = asyncio.run(_by_rule(database_url, window))
        else:
            entries = asyncio.run(
                _query(
                    database_url,
                    since=since,
                    until=until,
                    patient=args.audit_patient,
                    tenant=args.audit_tenant,
                    limit=args.audit_limit,
                )
            )
    except UsageError as exc:
        print(f"cds-service audit: {exc}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except (OSError, SQLAlchemyError) as exc:
        # The exception's text may name hosts or statements; its class is enough to act on.
        print(
            f"cds-service audit: cannot read the audit trail ({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    if args.audit_by == "rule":
        if args.audit_format == "table":
            print(format_rule_table(rules))
        else:
            for rule in rules:
                print(json.dumps(rule.to_json(), separators=(",", ":")))
    elif args.audit_format == "table":
        print(format_table(entries))
    else:
        for entry in entries:
            print(json.dumps(entry_json(entry), separators=(",", ":")))
    return 0
