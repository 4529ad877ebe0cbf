"""Progress of a population job: a bar with an ETA on a terminal, plain lines otherwise.

On a terminal one line is redrawn (`[#####.....] 12/40 partitions  1,234 patients  ETA 0:42`);
elsewhere (CI logs, files) a line is printed at each tenth of the job and at the end, so a log
shows the job moving without one line per partition. The ETA is the time per partition so far
times the partitions left (partitions are of similar size: patients are hashed to them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress"]

WIDTH = 30


def _clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts finished partitions (and the patients their results report)."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.total = 0
        self.done = 0
        self.resumed = 0
        self.patients = 0
        self._started = 0.0
        self._next_line = 0.0

    def start(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.resumed = total, done, done
        self._started = self.clock()
        self._next_line = 0.1
        if done:
            self._say(f"{self.label}: {done} of {total} partitions already done (resumed)")

    def advance(self, result: dict[str, Any]) -> None:
        self.done += 1
        patients = result.get("patients")
        if isinstance(patients, int):
            self.patients += patients
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif self.total and self.done / self.total >= self._next_line:
            self._next_line = (int(self.done * 10 / self.total) + 1) / 10
            self._say(self.line())

    def finish(self) -> None:
        elapsed = self.clock() - self._started
        if self.tty:
            self.stream.write("\n")
        self._say(
            f"{self.label}: {self.done}/{self.total} partitions, {self.patients:,} patients "
            f"in {_clock(elapsed)}"
        )

    def eta(self) -> float | None:
        ran = self.done - self.resumed
        if ran <= 0:
            return None
        per_partition = (self.clock() - self._started) / ran
        return per_partition * (self.total - self.done)

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = int(share * WIDTH)
        eta = self.eta()
        return (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "
            f"partitions  {self.patients:,} patients  ETA {_clock(eta) if eta is not None else '?'}"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
