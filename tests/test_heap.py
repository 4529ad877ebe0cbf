"""The serving process freezes its start-up heap and raises the collector's threshold."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import gc, json
    from fastapi.testclient import TestClient
    from cds_service.config import Settings
    from cds_service.main import create_app

    before = gc.get_threshold()
    settings = Settings()
    if settings.gc_threshold:
        from cds_service.heap import quiet_start
        quiet_start()  # as `cds-service serve` does
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        print(json.dumps({"before": before, "after": gc.get_threshold(),
                          "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    """
)


def _probe(tmp_path: Path, threshold: str | None) -> dict[str, object]:
    import json

    env = {k: v for k, v in os.environ.items() if k != "CDS_GC_THRESHOLD"}
    env["CDS_DATABASE_URL"] = f"sqlite:///{tmp_path}/heap.db"
    if threshold is not None:
        env["CDS_GC_THRESHOLD"] = threshold
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_start_up_heap_is_frozen_and_threshold_raised_by_default(tmp_path: Path) -> None:
    result = _probe(tmp_path, None)
    assert result["after"] == [50_000, 20, 10]
    assert result["enabled"] is True  # switched off for start-up, on again once started
    # The compiled rule pack, models and modules: far more than a trivial heap.
    assert isinstance(result["frozen"], int) and result["frozen"] > 50_000


def test_threshold_zero_leaves_the_collector_alone(tmp_path: Path) -> None:
    result = _probe(tmp_path, "0")
    assert result["after"] == result["before"]
    assert result["frozen"] == 0
    assert result["enabled"] is True
