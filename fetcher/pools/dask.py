"""--dask, on the machine that runs fetcher: chunks out to the cluster, pages saved here.

Imported only with --dask (it needs the `dask` extra, which adds `distributed`).

- Tasks go out in chunks (`dask_worker.fetch_chunk`, one Dask task each), so the scheduler's
  per-task cost is paid once per chunk; at most `capacity` URLs are out on the cluster at
  once, so memory stays flat on both sides.
- On a worker, a chunk's URLs are fetched by a thread pool of --threads threads that the
  worker process keeps across chunks, behind a gate that spaces retries (--delay) and
  honours Retry-After. A chunk returns each URL's record and converted bytes, and the pauses
  its hosts asked for, which the gate here applies to every later chunk.
- The bytes are written (atomically) and the records posted by one thread here, so --out and
  the index work as they do locally. Each future is released once written.
- Chunks are submitted with `pure=False`: identical work is never merged behind our back
  (dedupe is fetcher's own). A chunk whose worker dies is re-run by Dask; its results are
  used once, from the run that finished, so no URL is lost or recorded twice.
- Workers need requests, chardetng-py (compiled) and distributed: fetcher's own code,
  tenacity, webencodings and h11 travel as a zip that every worker (including one that
  joins later) puts on its path.
  (Not truststore: the plugin reloads what it ships, which truststore's package cannot take;
  without it a worker verifies against OpenSSL's default paths, the system store on Linux.)

`distributed` is imported by name at run time (typed Any), so the type check reads this
module the same whether the extra is installed or not.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fetcher.errors import UsageError, first_line
from fetcher.politeness import HostGate
from fetcher.pools.base import WORKER_DIED, Dropped, Finished, Post
from fetcher.pools.dask_worker import fetch_chunk
from fetcher.pools.threads import open_archive
from fetcher.records import Record, failed
from fetcher.settings import Settings
from fetcher.store import Folders, keep_page
from fetcher.task import Task, crashed

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"
CHUNK_MIN = 32  # URLs in a chunk, at least
CHUNK_PER_THREAD = 4  # URLs in a chunk per --threads: a worker's pool stays busy to its end
CONNECT_TIMEOUT = 30.0  # seconds to reach a scheduler and see a first worker
# pure-Python packages the workers may lack
SHIPPED = ("fetcher", "tenacity", "webencodings", "h11")  # pure Python, so they can travel


class DaskPool:
    """Tasks in chunks on a Dask cluster; pages saved and records posted by one thread here."""

    def __init__(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> None:
        self.settings, self.post, self.gate, self.stopped = settings, post, gate, stopped
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
        self.pending: list[Task] = []  # taken, not yet sent: less than a chunk, cluster busy
        self.in_flight = 0
        self.chunks: dict[str, tuple[Any, list[Task]]] = {}  # key: (future, its tasks)
        self.finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closing = False
        self.archive = open_archive(settings)  # --warc: written here, by the writer thread
        self.folders = Folders(settings.out)  # the page folders the writer thread writes to
        self.writer = threading.Thread(target=self._write, name="fetcher-dask-writer", daemon=True)
        self.writer.start()

    @property
    def free(self) -> int:
        return self.capacity - self.in_flight

    def submit(self, tasks: Sequence[Task]) -> None:
        self.in_flight += len(tasks)
        self.pending.extend(tasks)
        while len(self.pending) >= self.chunk_size:
            self._send(self.chunk_size)
        self._send_if_idle()

    def done(self, task_id: int) -> None:
        self.in_flight -= 1
        self._send_if_idle()

    def rebalance(self) -> None:
        """Dask's scheduler places the chunks (and steals work between its workers itself)."""

    def _send_if_idle(self) -> None:
        """Send a part-filled chunk only while the cluster has less than a chunk per thread
        (one-URL chunks would cost Dask more than the fetching); drop it if stopping."""
        if not self.pending:
            return
        if self.stopped.value:  # never sent: like a task a local worker has not started
            dropped, self.pending = self.pending, []
            for task in dropped:
                self.post(Dropped(task.id), wake=True)
        elif len(self.chunks) < self.busy_chunks:
            self._send(len(self.pending))

    def _send(self, count: int) -> None:
        tasks, self.pending = self.pending[:count], self.pending[count:]
        future = self.client.submit(fetch_chunk, tasks, self.settings, pure=False)
        self.chunks[future.key] = (future, tasks)
        future.add_done_callback(self.finished.put)

    def _write(self) -> None:
        """Save each finished chunk's pages, post its records, release it."""
        while (future := self.finished.get()) is not None:
            _, tasks = self.chunks.pop(future.key, (None, []))
            if not self.closing:
                records = self._records(future, tasks)
                for number, (task_id, record) in enumerate(records, start=1):
                    self.post(Finished(task_id, record), wake=number == len(records))
            future.release()

    def _records(self, future: Any, tasks: list[Task]) -> list[tuple[int, Record]]:
        try:
            pages, pauses = future.result()
        except Exception as exc:
            error = WORKER_DIED if type(exc).__name__ == "KilledWorker" else None
            return [
                (t.id, failed(t.name, error, attempts=1) if error else crashed(t.name, exc))
                for t in tasks
            ]
        for host, (seconds, _throttled) in pauses.items():
            self.gate.pause(host, seconds)  # every later chunk waits, one at a time
        by_id = {task.id: task for task in tasks}
        settings, kept = self.settings, []
        for task_id, record, data, exchanges in pages:
            if self.archive is not None:  # --warc: the exchanges came back to be written here
                record = self.archive.add(record, exchanges, by_id[task_id].capture)
            record = keep_page(record, data, settings.out, settings.pages, self.folders)
            kept.append((task_id, record))
        return kept

    def close(self, wait: bool) -> None:
        self.closing = not wait
        for future, _ in list(self.chunks.values()):
            future.cancel()
        self.finished.put(None)
        self.writer.join(timeout=None if wait else 1.0)
        if not self.writer.is_alive():  # (one still writing keeps its folders open)
            self.folders.close()
        if self.archive is not None:
            self.archive.close()
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=5)
        shutil.rmtree(self.scratch, ignore_errors=True)


def connect(address: str, scratch: Path) -> tuple[Any, Any]:
    """(cluster or None, client) for `local`, `env`, or a scheduler address.

    `local` starts a LocalCluster on 127.0.0.1 (a worker per core, dashboard on a free port,
    scratch space under `scratch`), which closes with the run. The extra is known to be
    installed (`PoolKind.require`, before the run).
    """
    distributed: Any = importlib.import_module("distributed")
    cluster = None
    try:
        if address == "local":
            cluster = distributed.LocalCluster(
                n_workers=os.cpu_count() or 1,
                threads_per_worker=2,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                local_directory=str(scratch / "cluster"),
                # a cluster of the run's own: its teardown after Ctrl-C (a worker's heartbeat
                # to a scheduler already gone, logged with a traceback) is not the user's
                # business, and what fails a URL reaches its record
                silence_logs=logging.CRITICAL,
            )
            client = distributed.Client(cluster, timeout=CONNECT_TIMEOUT)
        else:
            client = distributed.Client(_address(address), timeout=CONNECT_TIMEOUT)
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except UsageError:
        raise
    except Exception as exc:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot use the Dask cluster at {address}: {first_line(exc)}") from None
    return cluster, client


def _address(address: str) -> str:
    if address != "env":
        return address
    value = os.environ.get(ENV_ADDRESS)
    if not value:
        raise UsageError(f"--dask env: the environment variable {ENV_ADDRESS} is not set")
    return value


def _ship_code(client: Any, scratch: Path) -> None:
    """Zip fetcher and the pure-Python packages it needs, and have every worker, present and
    future, import them."""
    plugin: Any = importlib.import_module("distributed.diagnostics.plugin")
    archive = scratch / "fetcher_code.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in SHIPPED:
            package = Path(importlib.import_module(name).__file__ or "").parent
            for source in package.rglob("*.py"):
                bundle.write(source, Path(name) / source.relative_to(package))
    client.register_plugin(plugin.UploadFile(str(archive), load=True), name="fetcher-code")


__pool__ = DaskPool
