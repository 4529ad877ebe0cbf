"""The population engine: partitions run on a local Dask cluster, results kept for `--resume`,
a killed worker's partition run again, a failing partition named."""

from __future__ import annotations

import gc
import io
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cds_service.population.engine import (
    TASK_GC_THRESHOLDS,
    Cluster,
    JobFailed,
    fewer_collections,
    job_key,
    result_url,
    run_job,
)
from cds_service.population.progress import Progress

LOCAL = Cluster(workers=2)


def _square(log: str, index: int) -> dict[str, Any]:
    """A toy job: each call is logged (so a test sees which partitions ran, in which process)."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"{index} {os.getpid()}\n")
    return {"index": index, "square": index * index, "patients": 10}


def _die_once(marker_dir: str, index: int) -> dict[str, Any]:
    """Partition 3's first attempt kills its worker process outright (no exception to catch)."""
    marker = Path(marker_dir) / f"died-{index}"
    if index == 3 and not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return {"index": index, "patients": 1}


def _always_fails(index: int) -> dict[str, Any]:
    if index == 2:
        raise ValueError("partition 2 is unreadable")
    return {"index": index}


def _ran(log: Path) -> list[int]:
    if not log.exists():
        return []
    return sorted(int(line.split()[0]) for line in log.read_text().splitlines())


def test_every_partition_runs_once_on_the_local_cluster(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    results = run_job("toy", str(tmp_path), range(8), partial(_square, str(log)), cluster=LOCAL)
    assert {i: r["square"] for i, r in results.items()} == {i: i * i for i in range(8)}
    assert _ran(log) == list(range(8))
    # Two worker processes, none of them this one: the job really ran on the cluster.
    pids = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # Each result was stored by its worker, where --resume will look for it.
    stored = json.loads(Path(result_url(str(tmp_path), "toy", 5)).read_text())
    assert stored == results[5]


def test_resume_runs_only_the_partitions_without_a_result(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    task = partial(_square, str(log))
    run_job("toy", str(tmp_path), range(6), task, cluster=LOCAL)
    Path(result_url(str(tmp_path), "toy", 4)).unlink()  # as if the job stopped before it
    Path(result_url(str(tmp_path), "toy", 1)).write_text('{"torn')  # a write cut short
    log.unlink()
    results = run_job("toy", str(tmp_path), range(6), task, cluster=LOCAL, resume=True)
    assert _ran(log) == [1, 4]
    assert sorted(results) == list(range(6)) and results[4]["square"] == 16
    # Without --resume everything runs again.
    log.unlink()
    run_job("toy", str(tmp_path), range(6), task, cluster=LOCAL)
    assert _ran(log) == list(range(6))


def test_a_killed_worker_does_not_lose_its_partition(tmp_path: Path) -> None:
    results = run_job(
        "dies", str(tmp_path), range(6), partial(_die_once, str(tmp_path)), cluster=LOCAL
    )
    assert (tmp_path / "died-3").exists()  # the worker did die on partition 3
    assert sorted(results) == list(range(6))  # and the job's result is still complete
    assert sum(r["patients"] for r in results.values()) == 6


def test_a_partition_that_keeps_failing_fails_the_job_by_name(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match=r"partition 2 failed after 3 attempts: .*unreadable"):
        run_job("fails", str(tmp_path), range(4), _always_fails, cluster=LOCAL)


def test_the_job_key_changes_with_any_parameter() -> None:
    base = job_key("simulate", {"rules": "abc", "at": "2026-01-01"})
    assert base == job_key("simulate", {"at": "2026-01-01", "rules": "abc"})
    assert base != job_key("simulate", {"rules": "abd", "at": "2026-01-01"})
    assert base.startswith("simulate-")


def test_default_cluster_size_is_the_cpu_count() -> None:
    assert Cluster().worker_count == (os.cpu_count() or 1)
    assert "tcp://scheduler:8786" in Cluster(scheduler="tcp://scheduler:8786").describe()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_off_a_terminal_every_tenth_and_at_the_end() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress("simulate", out, tty=False, clock=clock)
    progress.start(total=20)
    for _ in range(20):
        clock.now += 2
        progress.advance({"patients": 5})
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # ten tenths and the summary, not one line per partition
    assert lines[0].startswith("simulate [###...") and "2/20 partitions" in lines[0]
    assert "ETA 0:36" in lines[0]  # 2 s per partition, 18 left
    assert lines[-1] == "simulate: 20/20 partitions, 100 patients in 0:40"


def test_progress_bar_on_a_terminal_and_resumed_partitions() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress("precompute", out, tty=True, clock=clock)
    progress.start(total=4, done=2)
    clock.now += 10
    progress.advance({"patients": 7})
    text = out.getvalue()
    assert text.startswith("precompute: 2 of 4 partitions already done (resumed)\n")
    # The bar is redrawn in place; the ETA counts only partitions run now (10 s each).
    bar = "[" + "#" * 22 + "." * 8 + "]"
    assert text.endswith(f"\rprecompute {bar} 3/4 partitions  7 patients  ETA 0:10")


def test_the_local_cluster_is_shut_down_after_the_job(tmp_path: Path) -> None:
    """Its worker processes must not outlive the job (a client's close alone leaves them)."""
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run_job("toy", str(tmp_path), range(2), partial(_square, str(tmp_path / "log")), cluster=LOCAL)
    after = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert after == []


def _collector_state(index: int) -> dict[str, Any]:
    return {"index": index, "threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}


def test_a_task_runs_withfewer_collections_and_the_process_gets_its_settings_back(
    tmp_path: Path,
) -> None:
    """Partition tasks run with the collector's task thresholds (the objects alive before them
    frozen); the thresholds are restored after the last task, nested or not."""
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == TASK_GC_THRESHOLDS and gc.get_freeze_count() > 0
        with fewer_collections():
            assert gc.get_threshold() == TASK_GC_THRESHOLDS
        assert gc.get_threshold() == TASK_GC_THRESHOLDS  # the outer task still runs
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    results = run_job("gc", str(tmp_path), range(2), _collector_state, cluster=Cluster(workers=1))
    for result in results.values():
        assert result["threshold"] == list(TASK_GC_THRESHOLDS) and result["frozen"] > 0


def _profiler_setting(index: int) -> dict[str, Any]:
    import dask

    return {"index": index, "profile": dask.config.get("distributed.worker.profile.enabled")}


def test_local_workers_run_without_the_statistical_profiler(tmp_path: Path) -> None:
    """Its stack samples grew a worker's memory with every partition (docs/benchmarks.md)."""
    one = Cluster(workers=1)
    results = run_job("prof", str(tmp_path), range(2), _profiler_setting, cluster=one)
    assert [r["profile"] for r in results.values()] == [False, False]
