"""--dask: the fetches run on a Dask cluster; pages come back and are saved and indexed here.

Imported only with --dask (it needs the `dask` extra: `pip install 'fetcher[dask]'`).

- The dispatcher's tasks are sent in chunks (`fetch_chunk`, one Dask task each), so the
  scheduler's per-task cost is paid once per chunk; at most `capacity` URLs are out on the
  cluster at once, so memory stays flat on both sides.
- On a worker, a chunk's URLs are fetched by a thread pool of --threads threads that the
  worker process keeps across chunks (with their sessions and connections), behind a gate
  that spaces retries (--delay) and honours Retry-After. A chunk returns each URL's record
  and converted bytes, and the pauses its hosts asked for, which the dispatcher here
  applies to every later chunk.
- The bytes are written (atomically) and the records indexed by one thread here, so --out
  and the index work as they do locally. Each future is released once written.
- Chunks are submitted with `pure=False`: identical work is never merged behind our back
  (dedupe is fetcher's own). A chunk whose worker dies is re-run by Dask; its results are
  used once, from the run that finished, so no URL is lost or recorded twice.
- Workers need only requests and distributed: fetcher's own code, and tenacity, travel as a
  zip that every worker (including one that joins later) puts on its path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import zipfile
from multiprocessing.dummy import Pool as ThreadPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetcher.errors import UsageError
from fetcher.job import Task, crashed, fetch_task, keep
from fetcher.politeness import HostGate
from fetcher.records import Record, failed
from fetcher.runner import WORKER_DIED
from fetcher.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

INSTALL_HINT = "--dask needs the dask extra: pip install 'fetcher[dask]'"
ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"
CHUNK_MIN = 32  # URLs in a chunk, at least
CHUNK_PER_THREAD = 4  # URLs in a chunk per --threads: a worker's pool stays busy to its end
CONNECT_TIMEOUT = 30.0  # seconds to reach a scheduler and see a first worker
SHIPPED = ("fetcher", "tenacity", "webencodings")  # pure-Python packages the workers may lack

ChunkResult = tuple[list[tuple[int, Record, bytes | None]], dict[str, tuple[float, bool]]]


# ---- on the workers -------------------------------------------------------------------------

_worker_lock = threading.Lock()
_worker_pools: dict[int, Any] = {}
_worker_gates: dict[float, HostGate] = {}


def fetch_chunk(tasks: list[Task], settings: Settings) -> ChunkResult:
    """On a worker: fetch `tasks` with this process's threads; records, bytes and pauses."""
    pool, gate = _worker_state(settings)
    results = pool.map(lambda task: fetch_task(task, settings, gate), tasks, chunksize=1)
    pages = [(task.id, record, data) for task, (record, data) in zip(tasks, results, strict=True)]
    pauses = {}
    for host in {task.host for task in tasks}:
        left, throttled = gate.pause_left(host)
        if left > 0 or throttled:
            pauses[host] = (left, throttled)
    return pages, pauses


def _worker_state(settings: Settings) -> tuple[Any, HostGate]:
    """This worker process's thread pool and gate, made once and shared by its chunks."""
    with _worker_lock:
        pool = _worker_pools.get(settings.threads)
        if pool is None:
            pool = _worker_pools[settings.threads] = ThreadPool(settings.threads)
        gate = _worker_gates.get(settings.delay)
        if gate is None:
            gate = _worker_gates[settings.delay] = HostGate(None, settings.delay)  # threads only
        return pool, gate


# ---- here, on the machine that runs fetcher ------------------------------------------------


class DaskExecutor:
    """Tasks in chunks on a Dask cluster; pages saved and records posted by one thread here."""

    def __init__(self, settings: Settings, post: Callable[[tuple[Any, ...]], None], gate: HostGate):
        self.settings, self.post, self.gate = settings, post, gate
        self.scratch = Path(tempfile.mkdtemp(prefix="fetcher-dask-"))
        try:
            self.cluster, self.client = connect(settings.dask or "local", self.scratch)
            _ship_code(self.client, self.scratch)
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        workers = self.client.scheduler_info()["workers"]
        threads = int(sum(w.get("nthreads", 1) for w in workers.values()))
        # big enough that Dask's cost per task (milliseconds) is small beside the chunk's work;
        # a chunk per Dask thread running and as many waiting, so no worker idles in between
        self.chunk_size = max(CHUNK_MIN, CHUNK_PER_THREAD * settings.threads)
        self.busy_chunks = max(threads, len(workers))
        self.capacity = 2 * self.busy_chunks * self.chunk_size
        self.pending: list[Task] = []
        self.in_flight = 0
        self.chunks: dict[str, tuple[Any, list[Task]]] = {}  # key: (future, its tasks)
        self.finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closing = False
        self.writer = threading.Thread(target=self._write, name="fetcher-dask-writer", daemon=True)
        self.writer.start()

    @property
    def free(self) -> int:
        return self.capacity - self.in_flight

    def submit(self, task: Task) -> None:
        self.in_flight += 1
        self.pending.append(task)
        if len(self.pending) >= self.chunk_size:
            self._send()

    def flush(self) -> None:
        """Send a part-filled chunk only while the cluster has less than a chunk per thread:
        the main loop calls this after every event, and one-URL chunks would cost Dask more
        than the fetching."""
        if self.pending and len(self.chunks) < self.busy_chunks:
            self._send()

    def cancel_pending(self) -> list[int]:
        ids = [task.id for task in self.pending]
        self.in_flight -= len(ids)
        self.pending = []
        return ids

    def _send(self) -> None:
        tasks, self.pending = self.pending, []
        future = self.client.submit(fetch_chunk, tasks, self.settings, pure=False)
        self.chunks[future.key] = (future, tasks)
        future.add_done_callback(self.finished.put)

    def done(self, task_id: int) -> None:
        self.in_flight -= 1

    def lost(self, slot: int) -> list[int]:
        return []  # Dask re-runs the chunks of a worker that died

    def _write(self) -> None:
        """Save each finished chunk's pages, post its records, release it."""
        while (future := self.finished.get()) is not None:
            _, tasks = self.chunks.pop(future.key, (None, []))
            if not self.closing:
                for task_id, record in self._records(future, tasks):
                    self.post(("record", task_id, record))
            future.release()

    def _records(self, future: Any, tasks: list[Task]) -> list[tuple[int, Record]]:
        try:
            pages, pauses = future.result()
        except Exception as exc:
            error = WORKER_DIED if type(exc).__name__ == "KilledWorker" else None
            return [
                (t.id, failed(t.url, error, attempts=1) if error else crashed(t.url, exc))
                for t in tasks
            ]
        for host, (seconds, _throttled) in pauses.items():
            self.gate.pause(host, seconds)  # every later chunk waits, one at a time
        return [(task_id, keep(record, data, self.settings.out)) for task_id, record, data in pages]

    def close(self, wait: bool) -> None:
        self.closing = not wait
        for future, _ in list(self.chunks.values()):
            future.cancel()
        self.finished.put(None)
        self.writer.join(timeout=None if wait else 1.0)
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=5)
        shutil.rmtree(self.scratch, ignore_errors=True)


def require_extra() -> None:
    """UsageError (exit 2) with the pip command when the dask extra is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise UsageError(INSTALL_HINT)


def connect(address: str, scratch: Path) -> tuple[Any, Any]:
    """(cluster or None, client) for `local`, `env`, or a scheduler address.

    `local` starts a LocalCluster on 127.0.0.1 (a worker per core, dashboard on a free port,
    scratch space under `scratch`), which closes with the run.
    """
    require_extra()
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=os.cpu_count() or 1,
                threads_per_worker=2,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                local_directory=str(scratch / "cluster"),
                silence_logs=logging.ERROR,
            )
            client = Client(cluster, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        else:
            client = Client(_address(address), timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except UsageError:
        raise
    except Exception as exc:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot use the Dask cluster at {address}: {_one_line(exc)}") from None
    return cluster, client


def _address(address: str) -> str:
    if address != "env":
        return address
    value = os.environ.get(ENV_ADDRESS)
    if not value:
        raise UsageError(f"--dask env: the environment variable {ENV_ADDRESS} is not set")
    return value


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _ship_code(client: Any, scratch: Path) -> None:
    """Zip fetcher (and tenacity) and have every worker, present and future, import it."""
    from distributed.diagnostics.plugin import UploadFile

    archive = scratch / "fetcher_code.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in SHIPPED:
            package = Path(sys.modules[name].__file__ or "").parent
            for source in package.rglob("*.py"):
                bundle.write(source, Path(name) / source.relative_to(package))
    client.register_plugin(UploadFile(str(archive), load=True), name="fetcher-code")
