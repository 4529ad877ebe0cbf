"""Shared test data: JSON files under `rules/_fixtures/` that cases name instead of inlining.

A case's `context_file` and `prefetch_files` are paths relative to the rules directory and must
stay under `_fixtures/`. Each file is read once per run, however many cases use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES_DIR", "Fixtures"]

FIXTURES_DIR = "_fixtures"


class Fixtures:
    """The fixture files of one rules directory, read on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._read: dict[Path, Any] = {}

    def load(self, ref: str, *, nullable: bool) -> tuple[Any, str | None]:
        """The JSON `ref` names, and None; or None and why it cannot be used.

        `nullable`: a prefetch file, which holds a FHIR resource or `null`; otherwise (a context)
        it must hold a JSON object.
        """
        base = (self.root / FIXTURES_DIR).resolve()
        target = (self.root / ref).resolve()
        if not target.is_relative_to(base):
            return None, (
                f"'{ref}' is not under {FIXTURES_DIR}/ (paths are relative to the "
                "rules directory, e.g. _fixtures/bundle.json)"
            )
        if target not in self._read:
            try:
                self._read[target] = json.loads(target.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None, f"fixture file '{ref}' does not exist"
            except (OSError, UnicodeDecodeError) as exc:
                return None, f"cannot read fixture file '{ref}': {type(exc).__name__}"
            except json.JSONDecodeError as exc:
                return None, (
                    f"fixture file '{ref}' is not valid JSON: {exc.msg} "
                    f"(line {exc.lineno}, column {exc.colno})"
                )
        value = self._read[target]
        if value is None and nullable:
            return None, None
        if not isinstance(value, dict) or (nullable and "resourceType" not in value):
            kind = "a FHIR resource or null" if nullable else "a JSON object"
            return None, f"fixture file '{ref}' must hold {kind}"
        return value, None
