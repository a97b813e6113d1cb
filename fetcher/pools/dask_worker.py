"""--dask, on the workers: `fetch_chunk` fetches a chunk of tasks with the worker's threads.

Dask ships `fetch_chunk` by reference to this module, so this is what every Dask worker
imports: the fetch path (task, http, charset, politeness), not the run, the store or the CLI.
"""

from __future__ import annotations

import threading
from multiprocessing.dummy import Pool as DummyPool
from typing import Any

from fetcher.capture import Exchange
from fetcher.politeness import Delay, HostGate
from fetcher.records import Record
from fetcher.settings import Settings
from fetcher.task import Task, fetch_task

# (task id, record, bytes to save, exchanges for --warc) per task; (seconds paused,
# throttled) per host
Page = tuple[int, Record, bytes | None, list[Exchange]]
ChunkResult = tuple[list[Page], dict[str, tuple[float, bool]]]

_lock = threading.Lock()
_pools: dict[int, Any] = {}
_gates: dict[Delay, HostGate] = {}


def fetch_chunk(tasks: list[Task], settings: Settings) -> ChunkResult:
    """Fetch `tasks` with this process's threads; their records, bytes, exchanges (with
    --warc: the driver writes them) and host pauses."""
    pool, gate = _worker_state(settings)

    def fetch(task: Task) -> Page:
        exchanges: list[Exchange] | None = [] if settings.warc is not None else None
        record, data = fetch_task(task, settings, gate, exchanges=exchanges)
        return task.id, record, data, exchanges or []

    pages: list[Page] = pool.map(fetch, tasks, chunksize=1)
    pauses = {}
    for host in {task.host for task in tasks}:
        left, throttled = gate.pause_left(host)
        if left > 0 or throttled:
            pauses[host] = (left, throttled)
    return pages, pauses


def _worker_state(settings: Settings) -> tuple[Any, HostGate]:
    """This worker process's thread pool and gate, made once and shared by its chunks (with
    their sessions and connections)."""
    with _lock:
        pool = _pools.get(settings.threads)
        if pool is None:
            pool = _pools[settings.threads] = DummyPool(settings.threads)
        gate = _gates.get(settings.delay)
        if gate is None:
            gate = _gates[settings.delay] = HostGate(None, settings.delay)  # threads only
        return pool, gate
