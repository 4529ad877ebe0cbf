"""`cds-service serve` in a subprocess, as an operator starts it (the CLI and supervisor tests)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from deploy.topology import free_port


def start_serve(
    tmp_path: Path, port: int, workers: int, *, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`python -m cds_service serve` on `port` with a SQLite database under `tmp_path`; output
    (stdout and stderr) is captured, or written to `log` (a long run fills a pipe nobody reads,
    and the server then blocks on its next log line)."""
    command = ["serve", "--port", str(port), "--workers", str(workers)]
    output = None if log is None else log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cds_service", *command],
        env={
            **os.environ,
            "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db",
            "CDS_ENV": "development",
            **env,
        },
        stdout=subprocess.PIPE if output is None else output,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    if output is not None:
        output.close()  # the server has its own copy of the file
    return process


def wait_healthy(base: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    """Until `/healthz` answers 200; fails when the process exits or time runs out.

    How soon is not what is tested (start-up is measured by `bench/`): on a slow 2-core CI
    machine, with the suite's other worker busy, two workers took over 15 s to start."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


@contextlib.contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[str]:
    """One worker of `cds-service serve` on a free port, its output in `tmp_path/serve.log`:
    yields its base URL once healthy, and stops it (terminate, then kill) when done."""
    port = free_port()
    process = start_serve(tmp_path, port, 1, log=tmp_path / "serve.log", **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
