"""Shared set-up of the validator tests: a copy of the shipped rules to edit."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from cds_service.config import default_rules_dir

__all__ = ["edit", "shipped_rules"]


def shipped_rules(tmp_path: Path, kept: Iterable[str]) -> Path:
    """A copy of the shipped rules directory (value sets, terminology, services) with only the
    rules named in `kept`, and their tests."""
    keep = set(kept)
    root = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), root)
    for path in root.glob("*/*.yaml"):
        if path.parent.name.startswith("_") or path.name.startswith("_"):
            continue
        if path.name.split(".")[0] not in keep:
            path.unlink()
    return root


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first `old` in the file, which must hold it."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
