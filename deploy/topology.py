"""The scale-out topology from local processes: N service replicas behind nginx.

What docker-compose.yml runs, without a Docker engine: `cds-service serve` processes on loopback
ports, sharing the machine's PostgreSQL (feedback, audit) and Redis (score cache, JWT `jti`
replay guard), with Debian's nginx in front as the load balancer. nginx runs from a config rendered
from `deploy/nginx.conf.template` into a temporary directory (pid, logs and temp files there), so
any user can run it without touching /etc or /var.

As a script (runs until Ctrl-C):

    python deploy/topology.py --replicas 2 --tenants deploy/tenants.yaml [--port 8080]

As a module:

    with Topology(tenants_file=path, replicas=2) as topo:
        httpx.get(topo.url + "/healthz")      # through nginx
        topo.kill(0)                          # SIGKILL replica 0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template
from types import TracebackType

import httpx

__all__ = [
    "NGINX",
    "POSTGRES_ADMIN_URL",
    "Topology",
    "create_database",
    "drop_database",
    "free_port",
    "rss_mb",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "nginx.conf.template"
NGINX = os.environ.get("CDS_TOPOLOGY_NGINX", "/usr/sbin/nginx")
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_BASE = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
REDIS_BASE = "redis://127.0.0.1:6379"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _valid_name(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"database name must be letters, digits and _: {name!r}")
    return name


async def _admin(sql: str, *args: object) -> object:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        if args:
            return await conn.fetchval(sql, *args)
        return await conn.execute(sql)
    finally:
        await conn.close()


def create_database(name: str) -> str:
    """Create the PostgreSQL database `name` unless it exists; returns its URL."""
    _valid_name(name)
    if not asyncio.run(_admin("SELECT 1 FROM pg_database WHERE datname = $1", name)):
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return f"{POSTGRES_BASE}/{name}"


def drop_database(name: str) -> None:
    """Drop the PostgreSQL database `name` (closing its remaining connections)."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_valid_name(name)}" WITH (FORCE)'))


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url}: process exited with {process.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s (log: {log})")


class Topology:
    """N `cds-service serve` replicas behind nginx, sharing PostgreSQL and Redis."""

    def __init__(
        self,
        tenants_file: str | Path,
        *,
        replicas: int = 2,
        port: int | None = None,
        database: str = "cds_topology",
        redis_db: int = 13,
        nginx: str = NGINX,
        extra_env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self.tenants_file = Path(tenants_file).resolve()
        self.count = replicas
        self.port = port or free_port()
        self.database = _valid_name(database)
        self.redis_url = f"{REDIS_BASE}/{redis_db}"
        self.nginx = nginx
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.replicas: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.nginx_process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.database_url = ""

    # --- lifecycle -------------------------------------------------------------------------

    def replica_env(self) -> dict[str, str]:
        """The environment of every replica (inherited CDS_ variables are dropped)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(
            {
                "CDS_AUTH": "required",
                "CDS_TENANTS_FILE": str(self.tenants_file),
                "CDS_PUBLIC_BASE_URL": self.url,
                "CDS_DATABASE_URL": self.database_url,
                "CDS_REDIS_URL": self.redis_url,
                "CDS_ENV": "development",
                "CDS_RULES_RELOAD_SECONDS": "0",
                "CDS_LOG_LEVEL": "warning",
                **self.extra_env,
            }
        )
        return env

    def start(self) -> Topology:
        if not Path(self.nginx).exists():
            raise RuntimeError(f"nginx not found at {self.nginx} (apt-get install -y nginx)")
        self.workdir = Path(tempfile.mkdtemp(prefix="cds-topology-"))
        # Readable by nginx workers, which switch to `nobody` when the master runs as root.
        self.workdir.chmod(0o755)
        try:
            self.database_url = create_database(self.database)
            cli = str(Path(sys.executable).parent / "cds-service")
            env = self.replica_env()
            # One at a time: the first creates the schema, so replicas never race on DDL.
            for index in range(self.count):
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                log = self.workdir / f"replica-{index}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        [cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
                        env=env,
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                self.processes.append(process)
                self.replicas.append(base)
                _wait_healthy(f"{base}/healthz", process, self.startup_timeout, log)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def render_nginx_conf(self) -> str:
        assert self.workdir is not None
        servers = "\n".join(
            f"        server {base.removeprefix('http://')} max_fails=1 fail_timeout=5s;"
            for base in self.replicas
        )
        return Template(TEMPLATE.read_text()).safe_substitute(
            workdir=str(self.workdir), port=str(self.port), servers=servers
        )

    def _start_nginx(self) -> None:
        assert self.workdir is not None
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.render_nginx_conf())
        log = self.workdir / "nginx.out"
        with log.open("wb") as out:
            # -e: the error log before the config is read (the compiled-in one is under /var).
            self.nginx_process = subprocess.Popen(
                [self.nginx, "-c", str(conf), "-p", str(self.workdir), "-e", "stderr"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_healthy(f"{self.url}/healthz", self.nginx_process, self.startup_timeout, log)

    def stop(self) -> None:
        """Stop nginx (graceful quit) and every replica (SIGTERM, then SIGKILL)."""
        if self.nginx_process is not None and self.nginx_process.poll() is None:
            self.nginx_process.send_signal(signal.SIGQUIT)
            try:
                self.nginx_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx_process.kill()
                self.nginx_process.wait()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.nginx_process = None
        self.processes = []
        self.replicas = []
        if self.workdir is not None and not os.environ.get("CDS_TOPOLOGY_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` (no graceful shutdown: as if its machine died)."""
        process = self.processes[index]
        process.kill()
        process.wait()

    def log_path(self, index: int) -> Path:
        """Where replica `index` writes its log (JSON lines, level CDS_LOG_LEVEL)."""
        assert self.workdir is not None
        return self.workdir / f"replica-{index}.log"

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def alive(self, index: int) -> bool:
        return self.processes[index].poll() is None

    def __enter__(self) -> Topology:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--tenants", required=True, help="tenants file (CDS_TENANTS_FILE)")
    parser.add_argument("--port", type=int, default=8080, help="where nginx listens")
    parser.add_argument("--database", default="cds_topology", help="PostgreSQL database name")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database number")
    parser.add_argument("--nginx", default=NGINX)
    args = parser.parse_args(argv)
    topology = Topology(
        args.tenants,
        replicas=args.replicas,
        port=args.port,
        database=args.database,
        redis_db=args.redis_db,
        nginx=args.nginx,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with topology:
        print(f"nginx      {topology.url}  (CDS_PUBLIC_BASE_URL)", flush=True)
        for index, (base, pid) in enumerate(zip(topology.replicas, topology.pids(), strict=True)):
            print(f"replica {index}  {base}  pid {pid}", flush=True)
        print(f"database   {topology.database_url}\nredis      {topology.redis_url}", flush=True)
        print("Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
