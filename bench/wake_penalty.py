"""What waking from idle costs this machine: the same work, run right after sleeps of 0 to 50 ms.

    python -m bench.wake_penalty [--repeat 300]

A hook call that waits on the EHR's FHIR server (missing prefetch) leaves the service's core idle
for tens of milliseconds, then runs on cold caches (and, on a virtual machine, on a vCPU the host
may have descheduled). Its CPU per call under load is then higher than its instruction count
says. This measures that penalty for a fixed piece of work (parsing a 30 KB JSON text, about as
long as a short stage of a call), pinned to one core, so that the missing-prefetch figures of
`bench.load` can be read against the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import time

GAPS_MS = (0.0, 1.0, 5.0, 50.0)
TEXT = json.dumps(
    [{"id": str(i), "codes": [str(i)] * 5, "value": {"v": i * 1.5}} for i in range(400)]
)


def measure(gap_s: float, repeat: int) -> tuple[float, float]:
    """Microseconds per iteration: process CPU (sleep excluded) and the work's own wall time."""
    cpu_started = time.process_time()
    work = 0.0
    for _ in range(repeat):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        json.loads(TEXT)
        work += time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return cpu / repeat * 1e6, work / repeat * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    measure(0.0, args.repeat)  # warm
    base_cpu = None
    for gap_ms in GAPS_MS:
        repeat = args.repeat if gap_ms < 10 else max(args.repeat // 5, 20)
        cpu, work = measure(gap_ms / 1000, repeat)
        base_cpu = base_cpu or cpu
        print(
            f"after {gap_ms:4.0f} ms idle: {cpu:7.1f} µs CPU per iteration, the work itself "
            f"{work:7.1f} µs ({cpu / base_cpu:4.2f} times back to back)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
