"""The `cds-service` command.

    cds-service serve [--host H] [--port P] [--workers N] [--rules DIR]
    cds-service openapi [--output FILE] [--check]
    cds-service score NAME [key=value ...] [--patient FILE] [--at DATE]
    cds-service rules lint|test|explain|schema ...
    cds-service precompute (--ndjson DIR | --fhir-base URL ...)
    cds-service population generate --from DIR --patients N --out DIR [--seed S]
    cds-service audit --since WHEN [--until WHEN] [--patient ID] [--tenant T] [--limit N]
                      [--by rule] [--format json|table]

Flags override the matching `CDS_*` variables. Settings are validated before anything starts;
a bad one prints `invalid setting CDS_X: why` and exits with status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging.config
import os
import sys
from pathlib import Path
from typing import Any

from cds_service import __version__
from cds_service.audit import cli as audit_cli
from cds_service.config import Settings, load_settings
from cds_service.exceptions import ConfigurationError
from cds_service.heap import quiet_start
from cds_service.logs import log_config
from cds_service.population import cli as population_cli
from cds_service.population import generate_cli, precompute_cli
from cds_service.rules import cli as rules_cli
from cds_service.scores import cli as score_cli
from cds_service.security.tenants import tenants_for
from cds_service.supervisor import reuse_port_supported, supervise
from cds_service.workbench.simulations import record_report

__all__ = ["main"]

DEFAULT_OPENAPI = Path("openapi") / "cds-service.openapi.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"cds-service {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="interface to bind (CDS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (CDS_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (CDS_WORKERS, default 1)")
    serve.add_argument("--rules", help="rules directory (CDS_RULES_DIR, default bundled rules/)")

    spec = commands.add_parser("openapi", help="write the OpenAPI document")
    spec.add_argument("--output", type=Path, default=DEFAULT_OPENAPI)
    spec.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")

    score_cli.add_parser(commands)
    simulate = functools.partial(population_cli.add_simulate, recorder=record_report)
    rules_cli.add_parser(commands, extensions=[simulate])
    precompute_cli.add_parser(commands)
    generate_cli.add_parser(commands)
    audit_cli.add_parser(commands)
    return parser


def render_openapi() -> str:
    """The OpenAPI document as committed: sorted keys, two-space indent, trailing newline."""
    from cds_service.main import create_app
    from cds_service.openapi import build_openapi

    settings = Settings(database_url="sqlite:///:memory:", auth="disabled")
    app = create_app(settings, services=[])  # the document does not depend on the services
    return json.dumps(build_openapi(app), indent=2, sort_keys=True) + "\n"


def _serve(args: argparse.Namespace) -> int:
    flags = {"host": args.host, "port": args.port, "workers": args.workers, "rules_dir": args.rules}
    overrides = {k: v for k, v in flags.items() if v is not None}
    settings = load_settings(**overrides)
    tenants_for(settings)  # a missing or bad tenants file stops start-up here, once
    # Workers are separate processes that build their settings from the environment.
    for key, value in overrides.items():
        os.environ[f"CDS_{key.upper()}"] = str(value)

    import uvicorn

    config = uvicorn_config(settings)
    # The app's start-up makes few cycles: no collections until settle_heap collects once.
    quiet = settings.gc_threshold > 0
    if settings.workers > 1 and reuse_port_supported():
        # A listening socket per worker, so the kernel spreads connections (supervisor.py).
        logging.config.dictConfig(config["log_config"])
        return supervise(settings.workers, config, settings.shutdown_grace_seconds, quiet=quiet)
    if quiet and settings.workers == 1:  # this process is the worker
        quiet_start()
    uvicorn.run(**config, workers=settings.workers)
    return 0


def uvicorn_config(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config keyword arguments `serve` runs with (but `workers`)."""
    return {
        "app": "cds_service.main:create_app_from_env",
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "proxy_headers": True,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "server_header": False,
        # uvicorn formats each request's access line before its logger drops it: above `info`,
        # where none would be written, it is not asked to.
        "access_log": settings.log_level in ("debug", "info"),
    }


def _openapi(args: argparse.Namespace) -> int:
    text = render_openapi()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `cds-service openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "score":
            return score_cli.run(args)
        if args.command == "rules":
            return rules_cli.run(args)
        if args.command == "precompute":
            return precompute_cli.run(args)
        if args.command == "audit":
            return audit_cli.run(args)
        if args.command == "population":
            return generate_cli.run(args)
        return _openapi(args)
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
