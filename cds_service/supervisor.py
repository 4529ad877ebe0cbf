"""Several worker processes on one port, each with its own listening socket (`SO_REUSEPORT`).

uvicorn's own `--workers` shares one listening socket between its workers; the first worker to
wake takes every connection waiting, so an EHR's handful of keep-alive connections (or a
benchmark's) often all land on one worker while the others idle: measured, two workers served 1.0x
one worker's throughput in three runs of four. With a socket per worker the kernel spreads new
connections over the workers by their address hash.

The supervisor (the parent process) never listens itself. It starts the workers, restarts one that
dies (giving up, with exit status 1, when workers keep dying within seconds of starting), and on
SIGTERM or SIGINT passes the signal on and waits for the workers' graceful shutdown
(`CDS_SHUTDOWN_GRACE_SECONDS`), then exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from cds_service.exceptions import ConfigurationError
from cds_service.heap import quiet_start

__all__ = ["reuse_port_supported", "supervise"]

log = logging.getLogger("cds_service.supervisor")

BACKLOG = 2048
# A worker that exits within this many seconds of starting counts as failing to start.
EARLY_EXIT_SECONDS = 5.0
MAX_EARLY_EXITS = 5


def reuse_port_supported() -> bool:
    """True where the kernel balances connections over sockets sharing a port (Linux)."""
    return hasattr(socket, "SO_REUSEPORT") and os.uname().sysname == "Linux"


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(config: dict[str, Any], quiet: bool) -> None:
    """One worker: its own socket in the port's group, then uvicorn on it."""
    if quiet:
        quiet_start()
    import uvicorn

    sock = _listening_socket(config["host"], config["port"])
    sock.listen(BACKLOG)
    server = uvicorn.Server(uvicorn.Config(**config))
    server.run(sockets=[sock])


def supervise(
    workers: int, config: dict[str, Any], grace_seconds: float, *, quiet: bool = False
) -> int:
    """Run `workers` uvicorn workers with `config` (uvicorn.Config keyword arguments) until
    SIGTERM/SIGINT; return the process exit status. `quiet`: no garbage collection in a worker
    until its app has started (cds_service/heap.py)."""
    # Fail here, once, when the address cannot be bound (in use by another program, bad host).
    try:
        probe = _listening_socket(config["host"], config["port"])
    except OSError as exc:
        where = f"{config['host']}:{config['port']}"
        raise ConfigurationError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    probe.close()
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(config, quiet), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous: dict[int, Callable[..., Any] | int] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        before = signal.signal(signum, on_signal)
        previous[signum] = signal.SIG_DFL if before is None else before
    running = {index: (start(), time.monotonic()) for index in range(workers)}
    early_exits = 0
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, (process, started) in list(running.items()):
                if process.is_alive() or stopping:
                    continue
                lived = time.monotonic() - started
                early_exits = early_exits + 1 if lived < EARLY_EXIT_SECONDS else 0
                log.error(
                    "worker %d (pid %s) exited with status %s after %.1fs",
                    index,
                    process.pid,
                    process.exitcode,
                    lived,
                )
                if early_exits >= MAX_EARLY_EXITS:
                    log.error("workers keep failing at start-up; stopping")
                    status = 1
                    stopping = True
                    break
                running[index] = (start(), time.monotonic())
    finally:
        for process, _ in running.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds + 5
        for process, _ in running.values():
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
                process.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
    return status
