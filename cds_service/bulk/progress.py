"""Progress events of a Bulk Data export, for a command line to show (plain, no secrets inside)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ExportProgress", "ExportStage", "ProgressCallback", "report"]

ExportStage = Literal[
    "kick-off",  # the export was accepted; message names the status URL
    "in-progress",  # the server is still working; message is its X-Progress text
    "complete",  # the manifest arrived; message counts its files
    "page",  # the next page of a paged manifest is being read
    "download",  # a file is being downloaded; message names it
    "cancelled",  # the export was cancelled (the consumer stopped early, or an error)
    "deleted",  # the finished export was deleted on the server (its files may go)
]


@dataclass(frozen=True, slots=True)
class ExportProgress:
    """One step of an export. `wait` is the delay in seconds before the next status request."""

    stage: ExportStage
    message: str
    wait: float | None = None


ProgressCallback = Callable[[ExportProgress], None]


def report(
    callback: ProgressCallback | None, stage: ExportStage, message: str, wait: float | None = None
) -> None:
    """Call `callback` when there is one."""
    if callback is not None:
        callback(ExportProgress(stage, message, wait))
