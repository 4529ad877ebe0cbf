"""`serve --workers N`: a listening socket per worker, restarts, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cds_service.supervisor import reuse_port_supported
from deploy.topology import free_port
from tests.serving import start_serve, wait_healthy

pytestmark = pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT is Linux's")


def _workers(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _established_inodes(port: int) -> set[str]:
    """Inodes of established TCP sockets whose local port is `port` (the server's side)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":
            out.add(fields[9])
    return out


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = start_serve(
        tmp_path, port, workers=2, CDS_AUTH="disabled", CDS_RULES_RELOAD_SECONDS="0"
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + 60  # not a speed test (see wait_healthy)
        while len(_workers(process.pid)) < 2 or not all(
            _listening(pid, port) for pid in _workers(process.pid)
        ):
            assert time.monotonic() < deadline, "workers did not both listen"
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)


def _listening(pid: int, port: int) -> bool:
    inodes = _socket_inodes(pid)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A" and fields[9] in inodes:
            return True
    return False


def test_each_worker_listens_and_connections_are_spread(
    two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = two_workers
    workers = _workers(process.pid)
    # The supervisor itself holds no listening socket: only the workers accept.
    assert not _listening(process.pid, port)
    clients = []
    try:
        for _ in range(24):  # 24 keep-alive connections, held open
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            clients.append(sock)
        established = _established_inodes(port)
        per_worker = [len(_socket_inodes(pid) & established) for pid in workers]
        assert sum(per_worker) == 24
        # Spread by the kernel's hash of the client address: both get some (a 24/0 split has
        # a chance of 2 in 16 million).
        assert min(per_worker) >= 1, per_worker
    finally:
        for sock in clients:
            sock.close()


def test_a_worker_that_dies_is_replaced(two_workers: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = two_workers
    victim = _workers(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        current = _workers(process.pid)
        if (
            victim not in current
            and len(current) == 2
            and all(_listening(pid, port) for pid in current)
        ):
            break
        assert time.monotonic() < deadline, f"no replacement for {victim}: {current}"
        time.sleep(0.2)
    # Fresh connections, whichever worker takes them: the replacement listens on the shared
    # socket from its start, so a connection it takes waits for its app to start (seconds on
    # a loaded machine); what is tested is that it answers, not how soon.
    for _ in range(10):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    process.terminate()
    output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "exited with status -9" in output


def test_a_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cds_service", "serve", "--port", str(port), "--workers", "2"],
            env={**os.environ, "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db"},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    finally:
        blocker.close()
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
