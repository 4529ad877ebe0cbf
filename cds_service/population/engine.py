"""Running a job over a partitioned population on Dask, in process or on a cluster.

A job is one function applied to every partition of a population (`task(index) -> result`,
the result a JSON object). Dask schedules the partitions: `Cluster(workers=N)` starts a
`distributed.LocalCluster` of N single-threaded worker processes in this process (the default:
one per CPU), `Cluster(scheduler="tcp://host:8786")` sends the same job to an existing cluster.
We write no scheduler: retries, a worker that dies mid-partition (its partition is run again
elsewhere: `distributed.scheduler.allowed-failures`), and placement are Dask's.

Each finished partition's result is written by the worker that computed it to
`{workdir}/results/{job}/part-NNNNN.json` (a local path or an fsspec URL, as the partitions are),
so a job that stops (a crash, Ctrl-C, a lost cluster) keeps what it finished: with `resume=True`
a partition whose result is there is not run again. The job directory is named after the job's
parameters (`job_key`), so a result computed with other rules or another date is never reused.
A partition that fails after its retries fails the job with the partition's name and the error.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cds_service.population.progress import Progress

__all__ = [
    "TASK_GC_THRESHOLDS",
    "Cluster",
    "JobFailed",
    "cluster_from",
    "fewer_collections",
    "job_key",
    "result_url",
    "run_job",
]

Result = dict[str, Any]
Task = Callable[[int], Result]
#: How often Dask runs a partition whose task raised before the job fails (worker deaths are
#: counted separately, by the scheduler).
RETRIES = 2


class JobFailed(RuntimeError):
    """A partition failed after its retries: the job's result would be incomplete."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """Where a job runs: N local worker processes (None: one per CPU), or a scheduler's address."""

    workers: int | None = None
    scheduler: str | None = None

    def describe(self) -> str:
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        return f"a local Dask cluster of {self.worker_count} worker process(es)"

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


def cluster_from(workers: int | None, scheduler: str | None) -> Cluster:
    """The cluster of the command line: `--workers` or `--scheduler`, else the scheduler of
    `CDS_POPULATION_SCHEDULER`, else a local cluster of one worker per CPU."""
    if workers is None and scheduler is None:
        from cds_service.config import load_settings

        scheduler = load_settings().population_scheduler
    return Cluster(workers=workers, scheduler=scheduler)


def job_key(name: str, parameters: Mapping[str, Any]) -> str:
    """`name-<hash of the parameters>`: the results directory of one job."""
    text = json.dumps(parameters, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def result_url(workdir: str, job: str, index: int) -> str:
    return f"{workdir.rstrip('/')}/results/{job}/part-{index:05d}.json"


def _read_result(url: str) -> Result | None:
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return None
    try:
        value = json.loads(fs.cat_file(path))
    except (OSError, ValueError):
        return None  # a torn write: run the partition again
    return value if isinstance(value, dict) else None


def _write_result(url: str, result: Result) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    data = json.dumps(result, sort_keys=True).encode()
    if isinstance(fs, LocalFileSystem):
        temporary = f"{path}.tmp-{os.getpid()}"
        fs.pipe_file(temporary, data)
        fs.mv(temporary, path)  # a rename: readers see the whole result or none
    else:
        fs.pipe_file(path, data)  # one object put: atomic on object stores


#: The Dask configuration local clusters run with (see `_client`).
PROFILER_OFF = {"distributed.worker.profile.enabled": False}

_GC_LOCK = threading.Lock()
_GC_TASKS = 0  # tasks running in this process under `fewer_collections`
_GC_SAVED: tuple[int, int, int] = (700, 10, 10)
#: A partition allocates millions of short-lived objects (parsed JSON, none of them cyclic):
#: at CPython's default thresholds (a collection every 700 allocations) the collector runs
#: thousands of times a partition, each time walking what is alive. 50,000 halves a
#: precompute's time (docs/benchmarks.md); every object is still reclaimed.
TASK_GC_THRESHOLDS = (50_000, 20, 20)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """For a partition's task: what was alive before it (the worker, the loaded services) is
    frozen out of the cyclic collector's sight and the collector runs less often; restored
    (and collected once) when the last task of the process ends."""
    global _GC_TASKS, _GC_SAVED
    with _GC_LOCK:
        if _GC_TASKS == 0:
            _GC_SAVED = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*TASK_GC_THRESHOLDS)
        _GC_TASKS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_TASKS -= 1
            if _GC_TASKS == 0:
                gc.set_threshold(*_GC_SAVED)
                gc.unfreeze()
                gc.collect()


def _run_and_store(task: Task, url: str, index: int) -> Result:
    with fewer_collections():
        result = task(index)
    _write_result(url, result)
    return result


@contextmanager
def _client(cluster: Cluster) -> Iterator[Any]:
    """A client of the cluster; a local cluster is started for the job and shut down after it
    (closing a client does not stop a LocalCluster it was given: its workers would outlive us)."""
    import dask
    from distributed import Client, LocalCluster

    if cluster.scheduler:
        with Client(cluster.scheduler, timeout="30s") as client:  # type: ignore[no-untyped-call]
            yield client
        return
    # Loopback only, and any free port: the scheduler's HTTP server (health, metrics) starts
    # even without the dashboard, and a fixed port would collide with a job already running.
    # Dask's statistical profiler keeps stack samples for the worker's lifetime: over a long job
    # they grew a worker by about 10 MB per 3,000-patient partition (gone with it off, and the
    # job 5 % faster). Workers of an external cluster need it off in their own configuration.
    with (
        dask.config.set(PROFILER_OFF),
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=cluster.worker_count,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as local,
        Client(local) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def run_job(
    job: str,
    workdir: str,
    partitions: Sequence[int],
    task: Task,
    *,
    cluster: Cluster,
    resume: bool = False,
    progress: Progress | None = None,
) -> dict[int, Result]:
    """Every partition's result, by index, computing those not already finished (`resume`).

    `task` must be picklable (a module-level function, or a `functools.partial` of one) and
    return a JSON object. Raises `JobFailed` naming the first partition that failed."""
    from distributed import as_completed

    results: dict[int, Result] = {}
    todo: list[int] = []
    for index in partitions:
        done = _read_result(result_url(workdir, job, index)) if resume else None
        if done is None:
            todo.append(index)
        else:
            results[index] = done
    if progress is not None:
        progress.start(total=len(partitions), done=len(results))
    if not todo:
        return results
    with _client(cluster) as client:
        futures = {
            client.submit(
                _run_and_store,
                task,
                result_url(workdir, job, index),
                index,
                key=f"{job}-part-{index:05d}",
                retries=RETRIES,
                pure=False,
            ): index
            for index in todo
        }
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            index = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the task's own error, re-raised by Dask
                for other in futures:
                    other.cancel()
                raise JobFailed(
                    f"partition {index} failed after {RETRIES + 1} attempts: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            results[index] = result
            if progress is not None:
                progress.advance(result)
    if progress is not None:
        progress.finish()
    return results
