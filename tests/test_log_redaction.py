"""The JSON log formatter blanks secrets the code never meant to log: what uvicorn's access log
writes for an OAuth callback (authorization code, state), JWTs and bearer tokens."""

from __future__ import annotations

import json
import logging

import pytest

from cds_service.logs import JsonFormatter

CODE = "SplxlOBeZQQYbYS6WxSbIA"
STATE = "af0ifjsldkj-3Hx"


def _access_line(path: str) -> str:
    """One line as uvicorn's access logger records it, through our formatter."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 303),
        None,
    )
    line: str = json.loads(JsonFormatter().format(record))["message"]
    return line


@pytest.mark.parametrize(
    "path",
    [
        f"/workbench/callback?code={CODE}&state={STATE}",
        f"/smart/callback?state={STATE}&code={CODE}",
        f"/smart/launch?iss=https%3A%2F%2Fehr.example&launch={CODE}&state={STATE}",
    ],
)
def test_oauth_values_in_access_logs_are_blanked(path: str) -> None:
    line = _access_line(path)
    assert CODE not in line and STATE not in line
    assert "code=[redacted]" in line or "launch=[redacted]" in line
    assert line.startswith('127.0.0.1:5000 - "GET /') and line.endswith('HTTP/1.1" 303')


def test_other_query_values_stay() -> None:
    line = _access_line("/workbench/rules?days=30&encode=x")
    assert "days=30" in line and "encode=x" in line
