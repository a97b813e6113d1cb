"""--threads workers in this process: a `multiprocessing.dummy` pool of long-lived loops.

The pool is `multiprocessing.dummy`'s (`multiprocessing.pool.ThreadPool`) given a context of
its own (`_ThreadsOnly`): its one multiprocessing object, the queue that wakes its worker
handler, is then a thread queue rather than a pipe with semaphores in /dev/shm, so that a
run of threads works where /dev/shm is read-only (some containers)."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Sequence
from multiprocessing.pool import Pool
from multiprocessing.pool import ThreadPool as DummyPool
from typing import TYPE_CHECKING, Any

from fetcher.capture import Exchange
from fetcher.politeness import HostGate
from fetcher.pools.base import Dropped, Finished, Post, waiting
from fetcher.records import Record
from fetcher.robots import Robots
from fetcher.settings import Settings
from fetcher.store import Folders, keep_page
from fetcher.task import Task, crashed, fetch_task

if TYPE_CHECKING:
    from fetcher.store.warc import Archive


def run_task(
    task: Task,
    settings: Settings,
    gate: HostGate | None = None,
    robots: Robots | None = None,
    archive: Archive | None = None,
    folders: Folders | None = None,
) -> Record:
    """Fetch, convert and save one URL (and archive its exchanges, with --warc). Never
    raises: whatever goes wrong fails the record."""
    try:
        exchanges: list[Exchange] | None = [] if archive is not None else None
        record, data = fetch_task(task, settings, gate, robots, exchanges)
        if archive is not None and exchanges is not None:
            record = archive.add(record, exchanges, task.capture)
        return keep_page(record, data, settings.out, settings.pages, folders)
    except BaseException as exc:  # no step raises; a bug must not lose the URL
        return crashed(task.name, exc)


def open_archive(settings: Settings) -> Archive | None:
    """This process's WARC files, with --warc (warcio imported only then: the warc extra)."""
    if settings.warc is None:
        return None
    from fetcher.store.warc import open_archive

    return open_archive(settings)


class _Notifier:
    """The pool's change notifier as multiprocessing's SimpleQueue is, a pipe, but guarded by
    thread locks where that one takes semaphores (in /dev/shm): put, get, empty and the
    pipe's `_reader`, which the pool's worker handler waits on, are all the pool uses."""

    def __init__(self) -> None:
        self._reader, self._writer = multiprocessing.Pipe(duplex=False)
        self._read_lock, self._write_lock = threading.Lock(), threading.Lock()

    def put(self, item: object) -> None:
        with self._write_lock:
            self._writer.send(item)

    def get(self) -> object:
        with self._read_lock:
            return self._reader.recv()

    def empty(self) -> bool:
        return not self._reader.poll()


class _ThreadsOnly:
    """A multiprocessing context for `multiprocessing.dummy`'s pool, whose only use of one is
    its change notifier: a thread queue here, where the default context's SimpleQueue makes
    two semaphores in /dev/shm."""

    SimpleQueue = _Notifier


def _dummy_pool(threads: int) -> DummyPool:
    """`multiprocessing.dummy.Pool(threads)`, with the `_ThreadsOnly` context (ThreadPool
    takes none: Pool's own initializer is given it, which is all ThreadPool's does)."""
    pool = DummyPool.__new__(DummyPool)
    Pool.__init__(pool, threads, context=_ThreadsOnly())
    return pool


class ThreadPool:
    """Each pool thread takes tasks from one inbox and posts its records itself, rather than a
    task per `apply_async`: that would pass every URL through the pool's two handler threads,
    two more thread hand-offs (and GIL hand-overs) per URL on the main process's critical path.
    """

    def __init__(
        self,
        settings: Settings,
        post: Post,
        gate: HostGate,
        stopped: Any,
        running: Any = None,
    ) -> None:
        self.settings, self.post, self.gate, self.stopped = settings, post, gate, stopped
        # `running`, in a worker process: a shared array where each thread keeps the id of
        # the task it runs (0: none), so that the parent tells, if the process dies, the
        # tasks it was running from those it never started
        self.running = running
        self.robots = Robots(settings, gate) if settings.robots else None  # its threads share
        self.inbox: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        # tasks wait in the inbox beside those running, so a thread that finishes starts its
        # next at once, without waiting for the run to wake; the run is woken to refill the
        # inbox when `low` or fewer wait: once per few records, not for each
        self.capacity = settings.threads + waiting(settings)
        self.low = waiting(settings) // 2
        self.rang = False  # since the last refill
        self.busy = 0
        # --warc: this process's WARC files, which its threads write
        self.archive = open_archive(settings)
        self.folders = Folders(settings.out)  # the page folders its threads write to
        self.pool = _dummy_pool(settings.threads)
        for number in range(settings.threads):
            self.pool.apply_async(self._work, (number,))

    def _work(self, number: int) -> None:
        while (task := self.inbox.get()) is not None:
            if self.stopped.value:  # a stop came while it waited: it never starts
                self.post(Dropped(task.id), wake=True)
                continue
            if self.running is not None:
                self.running[number] = task.id
            record = run_task(
                task, self.settings, self.gate, self.robots, self.archive, self.folders
            )
            self.post(Finished(task.id, record), wake=self._running_low())
            if self.running is not None:
                self.running[number] = 0

    def _running_low(self) -> bool:
        """Whether to wake the run: the inbox is empty (threads are about to idle), or it
        has fallen to `low` since the last refill (once: the run is on its way)."""
        queued = self.inbox.qsize()
        if queued == 0:
            return True
        if queued > self.low or self.rang:
            return False
        self.rang = True  # (two threads may both ring: the second ring costs one look)
        return True

    @property
    def free(self) -> int:
        return self.capacity - self.busy

    def submit(self, tasks: Sequence[Task]) -> None:
        self.busy += len(tasks)
        for task in tasks:
            self.inbox.put(task)
        self.rang = False

    def done(self, task_id: int) -> None:
        self.busy -= 1

    def rebalance(self) -> None:
        """Nothing to even out: every thread takes its next task from the one inbox."""

    def take_back(self) -> tuple[int, ...]:
        """The tasks still waiting in the inbox, which no thread will start now (a worker
        process gives them back to its parent)."""
        taken: list[int] = []
        while True:
            try:
                task = self.inbox.get_nowait()
            except queue.Empty:
                return tuple(taken)
            if task is None:  # closing: the sentinel goes back to the thread it was for
                self.inbox.put(None)
                return tuple(taken)
            taken.append(task.id)

    def close(self, wait: bool) -> None:
        for _ in range(self.settings.threads):
            self.inbox.put(None)
        self.pool.close()
        if wait:  # else the threads are left to finish on their own (they are daemons)
            self.pool.join()
            self.folders.close()  # (not under a thread left running: it may still write)
        if self.archive is not None:  # (a thread left running writes no more to it)
            self.archive.close()


__pool__ = ThreadPool
