"""`cds-service score NAME [key=value ...] [--patient FILE] [--at DATE] [--lookback-days N]`.

Prints one JSON object (score, value, unit, inputs, reason, sources, computed_at). Exit status 0
whether or not the score is computable (value null with the reason when not); 2 with a message on
stderr for an unknown key, a malformed ``key=value``, a bad ``--at``, an unreadable file or a file
holding more than one patient.

``--patient FILE`` reads a FHIR Bundle (or a single resource) as JSON, or NDJSON with one resource
per line (blank lines skipped). Inputs come from that record as of ``--at`` (a date means the end
of that day, UTC; default now); ``key=value`` inputs given as well override the record's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from cds_service.clock import system_clock
from cds_service.scores import SCORES, iso_seconds, sources_of

__all__ = ["add_parser", "run"]


class UsageError(Exception):
    """Bad command-line input; exit status 2."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``score`` with one sub-command per score name."""
    parser = subparsers.add_parser(
        "score",
        help="compute a clinical risk score",
        description="Compute a clinical risk score; `score NAME --help` lists its input keys.",
    )
    names = parser.add_subparsers(dest="score_name", metavar="NAME", required=True)
    for name, score in SCORES.items():
        keys = "\n".join(f"  {key}: {text}" for key, text in score.input_help.items())
        sub = names.add_parser(
            name,
            help=score.title,
            description=score.title,
            epilog=f"input keys:\n{keys}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("score_inputs", nargs="*", metavar="key=value", help="an input value")
        sub.add_argument(
            "--patient",
            dest="score_patient",
            metavar="FILE",
            type=Path,
            help="FHIR Bundle JSON or NDJSON file of one patient",
        )
        sub.add_argument(
            "--at",
            dest="score_at",
            metavar="DATE",
            help="as-of date YYYY-MM-DD (or ISO date-time); default now",
        )
        sub.add_argument(
            "--lookback-days",
            dest="score_lookback",
            metavar="N",
            type=int,
            help="look-back window for observations (default per score)",
        )


def run(args: argparse.Namespace) -> int:
    """Compute and print one score; the exit status."""
    now = system_clock()  # the command's one reading of the wall clock
    score = SCORES[args.score_name]
    try:
        given = _parse_pairs(args.score_inputs, set(score.input_help), args.score_name)
        at = _parse_at(args.score_at, now)
        inputs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if args.score_patient is not None:
            resources = load_patient_file(args.score_patient)
            lookback = args.score_lookback
            if lookback is not None and lookback < 1:
                raise UsageError("--lookback-days must be at least 1")
            if lookback is None:
                from_fhir = score.inputs_from_fhir(resources, at)
            else:
                from_fhir = score.inputs_from_fhir(resources, at, lookback)
            inputs.update(from_fhir)
            sources = {k: v for k, v in sources_of(from_fhir).items() if k not in given}
    except UsageError as exc:
        print(f"cds-service score: {exc}", file=sys.stderr)
        return 2
    inputs.update(given)
    result = replace(score.compute(inputs), sources=sources, computed_at=iso_seconds(now))
    print(json.dumps(result.to_json(), ensure_ascii=False))
    return 0


def _parse_pairs(pairs: list[str], known: set[str], name: str) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UsageError(f"malformed input {pair!r}: expected key=value")
        if key not in known:
            raise UsageError(
                f"unknown input key {key!r} for {name}; known: {', '.join(sorted(known))}"
            )
        if key in given:
            raise UsageError(f"input key {key!r} given twice")
        given[key] = value.strip()
    return given


def _parse_at(text: str | None, now: datetime) -> datetime:
    if text is None:
        return now
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.max, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid --at {text!r}: expected YYYY-MM-DD") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_patient_file(path: Path) -> list[dict[str, Any]]:
    """The resources of one patient from a Bundle / resource JSON or an NDJSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        resources = _ndjson(text, path)
    else:
        if not isinstance(document, dict) or "resourceType" not in document:
            raise UsageError(f"{path}: not a FHIR resource or Bundle")
        resources = _flatten(document)
    _check_one_patient(resources, path)
    return resources


def _ndjson(text: str, path: Path) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or "resourceType" not in item:
            raise UsageError(f"{path}:{number}: not a FHIR resource")
        resources.extend(_flatten(item))
    return resources


def _flatten(resource: dict[str, Any]) -> list[dict[str, Any]]:
    if resource.get("resourceType") != "Bundle":
        return [resource]
    out: list[dict[str, Any]] = []
    for entry in resource.get("entry") or []:
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict):
            out.extend(_flatten(inner))
    return out


def _check_one_patient(resources: list[dict[str, Any]], path: Path) -> None:
    ids = {str(r.get("id")) for r in resources if r.get("resourceType") == "Patient"}
    for resource in resources:
        subject = resource.get("subject") or resource.get("patient")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        patient_id = _patient_id(ref) if isinstance(ref, str) else None
        if patient_id:
            ids.add(patient_id)
    if len(ids) > 1:
        raise UsageError(f"{path} holds more than one patient ({len(ids)}); give one patient")


def _patient_id(ref: str) -> str | None:
    if ref.startswith("urn:uuid:"):
        return ref.removeprefix("urn:uuid:")
    parts = ref.split("/")
    if "Patient" in parts[:-1]:
        return parts[parts.index("Patient") + 1]
    return None
