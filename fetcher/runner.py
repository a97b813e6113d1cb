"""The pools, and the loop that feeds them: bounded intake, results as they finish.

One event queue carries everything the main thread reacts to: input entries (from a reader
thread), records (from worker threads or processes), the end of input, a dead worker. The
main thread alone touches the index. Intake is bounded by a semaphore, so a list of millions
of URLs never sits in memory, and a task is handed to a worker only when a thread there is
free, so stopping never strands work queued inside a pool.

With --processes we run our own group of processes rather than `multiprocessing.Pool`: the
stock Pool hangs forever when a worker dies mid-task and runs one task at a time per
process, whereas each of our processes runs --threads threads and the parent knows exactly
which URLs a dead worker held, so they are retried once elsewhere and the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from multiprocessing.dummy import Pool as ThreadPool
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

from fetcher.batching import Batcher
from fetcher.http import Validators
from fetcher.inputs import Entry
from fetcher.job import Task, crashed, run_task
from fetcher.politeness import HostGate, HostQueues, host_of
from fetcher.records import Record, failed, redact
from fetcher.settings import Settings
from fetcher.store import Index, Known

Post = Callable[[tuple[Any, ...]], None]
CONTEXT = multiprocessing.get_context("spawn")  # fork + threads is unsafe
WORKER_DIED = "worker died"
TICK = 0.002  # seconds the main loop naps when it has nothing to do
PARENT_POLL = 0.5  # seconds between a worker process's looks at whether its parent lives
AHEAD = 2  # tasks per thread handed to worker processes: one running, one on its way


class Executor(Protocol):
    """Where tasks run: `submit` while `free` > 0; each task's record comes back as an
    event ("record", task id, record), and `done` is called for it."""

    capacity: int  # tasks it can hold at once

    @property
    def free(self) -> int: ...

    def submit(self, task: Task) -> None: ...

    def flush(self) -> None:
        """Send what `submit` may have held back to batch it (a Dask chunk)."""

    def cancel_pending(self) -> list[int]:
        """Forget the tasks accepted but not yet started (for a stop); their ids."""

    def done(self, task_id: int) -> None: ...

    def lost(self, slot: int) -> list[int]:
        """The tasks a dead worker held (process pool)."""

    def close(self, wait: bool) -> None: ...


class ThreadExecutor:
    """--threads workers in this process: a `multiprocessing.dummy` pool of long-lived loops.

    Each pool thread takes tasks from one inbox and posts its records itself, rather than a
    task per `apply_async`: that would pass every URL through the pool's two handler threads,
    two more thread hand-offs (and GIL hand-overs) per URL on the main process's critical path.
    """

    def __init__(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> None:
        self.settings, self.post, self.gate, self.stopped = settings, post, gate, stopped
        self.inbox: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        # a task per thread: one waiting as well would keep every thread busy at once, which
        # costs no speed here but 20 MB more memory (measured: bench/run.py memory)
        self.capacity = settings.threads
        self.pool = ThreadPool(settings.threads)
        for _ in range(settings.threads):
            self.pool.apply_async(self._work)
        self.busy = 0

    def _work(self) -> None:
        while (task := self.inbox.get()) is not None:
            if self.stopped.value:  # a stop came while it waited: it never starts
                self.post(("dropped", task.id))
                continue
            try:
                record = run_task(task, self.settings, self.gate)
            except BaseException as exc:  # run_task never raises; a bug must not lose the URL
                record = crashed(task.url, exc)
            self.post(("record", task.id, record))

    @property
    def free(self) -> int:
        return self.capacity - self.busy

    def submit(self, task: Task) -> None:
        self.busy += 1
        self.inbox.put(task)

    def flush(self) -> None:
        pass

    def cancel_pending(self) -> list[int]:
        return []  # a task is handed over only when a thread is free for it

    def done(self, task_id: int) -> None:
        self.busy -= 1

    def lost(self, slot: int) -> list[int]:
        return []

    def close(self, wait: bool) -> None:
        for _ in range(self.settings.threads):
            self.inbox.put(None)
        self.pool.close()
        if wait:  # else the threads are left to finish on their own (they are daemons)
            self.pool.join()


class ProcessExecutor:
    """--processes worker processes, each running --threads threads of its own."""

    def __init__(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> None:
        self.settings, self.post, self.gate, self.stopped = settings, post, gate, stopped
        self.capacity = AHEAD * settings.concurrency
        self.context = CONTEXT
        self.results: Any = self.context.Queue()
        self.inboxes: list[Any] = []
        self.workers: list[BaseProcess] = []
        self.assigned: list[set[int]] = []
        self.outboxes: list[list[Task]] = []  # tasks for each worker, sent by flush()
        self.where: dict[int, int] = {}
        self.closing = threading.Event()
        self.monitor = threading.Thread(target=self._relay, name="fetcher-relay", daemon=True)

    def _start_all(self) -> None:
        """Spawned on the first task, so a run with nothing to fetch (--resume) starts none."""
        for slot in range(self.settings.processes):
            self.inboxes.append(self.context.Queue())
            self.assigned.append(set())
            self.outboxes.append([])
            self.workers.append(self._start(slot))
        self.monitor.start()

    def _start(self, slot: int) -> BaseProcess:
        worker = self.context.Process(
            target=worker_main,
            args=(
                self.settings,
                self.inboxes[slot],
                self.results,
                self.gate,
                self.stopped,
                os.getpid(),
            ),
            name=f"fetcher-worker-{slot}",
            daemon=True,
        )
        worker.start()
        return worker

    @property
    def free(self) -> int:
        return self.capacity - len(self.where)

    def submit(self, task: Task) -> None:
        if not self.workers:
            self._start_all()
        slot = min(range(len(self.workers)), key=lambda s: len(self.assigned[s]))
        self.assigned[slot].add(task.id)
        self.where[task.id] = slot
        self.outboxes[slot].append(task)

    def flush(self) -> None:
        """One message per worker for all its new tasks: one pickle, one pipe write."""
        for slot, tasks in enumerate(self.outboxes):
            if tasks:
                self.inboxes[slot].put(tasks)
                self.outboxes[slot] = []

    def cancel_pending(self) -> list[int]:
        return []  # workers drop the tasks they had not started (`stopped`)

    def done(self, task_id: int) -> None:
        slot = self.where.pop(task_id, None)
        if slot is not None:
            self.assigned[slot].discard(task_id)

    def lost(self, slot: int) -> list[int]:
        """The tasks a dead worker held; a fresh worker takes its place."""
        ids = list(self.assigned[slot])
        for task_id in ids:
            self.done(task_id)
        self.inboxes[slot] = self.context.Queue()  # the old one may hold a half-read task
        self.outboxes[slot] = []
        self.workers[slot] = self._start(slot)
        return ids

    def _relay(self) -> None:
        """Pass records to the main loop; report a worker that died (after its last records)."""
        reported: set[int] = set()
        while not self.closing.is_set():
            dead = [s for s, w in enumerate(self.workers) if not w.is_alive() and s not in reported]
            self._drain(timeout=0.1)
            for slot in dead:
                reported.add(slot)
                self.post(("died", slot))
            reported = {s for s in reported if not self.workers[s].is_alive()}

    def _drain(self, timeout: float) -> None:
        try:
            batch = self.results.get(timeout=timeout)
            while True:
                for message in batch:
                    self.post(message)
                batch = self.results.get_nowait()
        except queue.Empty:
            return

    def close(self, wait: bool) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        deadline = time.monotonic() + (5.0 if wait else 0.0)
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
        self.closing.set()
        if self.monitor.is_alive():
            self.monitor.join()


def worker_main(
    settings: Settings, inbox: Any, results: Any, gate: HostGate, stopped: Any, parent: int
) -> None:
    """A worker process: fetch what the parent sends with --threads threads, until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a run stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="fetcher-orphan", daemon=True
    ).start()
    outbox: Batcher[tuple[Any, ...]] = Batcher(results.put, name="fetcher-outbox")
    executor = ThreadExecutor(settings, outbox.post, gate, stopped)
    while (tasks := inbox.get()) is not None:
        for task in tasks:
            executor.submit(task)
    executor.close(wait=True)
    outbox.close()


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its standard error on /dev/null.

    Each worker's `multiprocessing.dummy` pool makes two semaphores (its change notifier);
    when a worker dies, the tracker removes them, as it should, and warns about them on
    standard error, which cron mails as a failure although nothing is wrong.
    """
    from multiprocessing import resource_tracker

    try:
        saved = os.dup(2)  # the tracker inherits descriptor 2 itself, not sys.stderr
    except OSError:
        return  # standard error is closed: its warnings go nowhere anyway
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _exit_with_parent(parent: int) -> None:
    """End this worker within PARENT_POLL seconds of its parent's death (even by kill -9),
    whatever its threads are doing: nobody is left to read its records. `parent` comes from
    the parent itself: one that died while this process started is noticed too."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


class Run:
    """Iterate over a Run to get one Record per entry, as each finishes.

    `total` is None until the input has been read to its end. `stop()` (e.g. from a signal
    handler) stops the intake; in-flight URLs get `settings.grace` seconds, a second stop()
    abandons them at once. `abandoned` tells whether anything was left unfinished.
    """

    def __init__(self, entries: Iterable[Entry], settings: Settings, index: Index) -> None:
        self.settings, self.index = settings, index
        self.total: int | None = None
        self.stopping = False
        self.abandoned = False
        self._deadline = float("inf")
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._credits = threading.Semaphore(0)  # entries the reader may still read
        self._granted = 0
        if settings.processes:
            _quiet_resource_tracker()
        self._gate = HostGate(CONTEXT if settings.processes else None, settings.delay)
        self._stopped = CONTEXT.RawValue("b", 0)  # read by every worker before each task
        self._queues = HostQueues(
            settings.per_host, settings.delay, self._gate, remote=settings.dask is not None
        )
        self._wake = 0.0
        self._tasks: dict[int, Task] = {}
        self._next_id = 0
        self._reader = threading.Thread(
            target=self._read, args=(entries,), daemon=True, name="fetcher-reader"
        )

    def stop(self) -> None:
        """Safe in a signal handler: it only sets flags, which the loop reads 4 times a second."""
        if self.stopping:
            self._deadline = 0.0
        else:
            self.stopping = True
            self._stopped.value = 1  # tasks waiting in a worker's inbox are dropped, not started
            self._deadline = time.monotonic() + self.settings.grace

    def __iter__(self) -> Iterator[Record]:
        self._executor = self._make_executor()
        self._read_ahead = 2 * self._executor.capacity + 16
        self._grant_step = self._read_ahead // 2
        self._reader.start()
        try:
            yield from self._loop()
        finally:
            self.stopping = True  # also when the consumer stops early: the reader quits
            self._executor.close(wait=not self.abandoned)

    def _make_executor(self) -> Executor:
        if self.settings.dask is not None:
            from fetcher.cluster import DaskExecutor  # only with --dask: needs the extra

            return DaskExecutor(self.settings, self._events.put, self._gate)
        if self.settings.processes:
            return ProcessExecutor(self.settings, self._events.put, self._gate, self._stopped)
        return ThreadExecutor(self.settings, self._events.put, self._gate, self._stopped)

    def _loop(self) -> Iterator[Record]:
        reading = True
        while reading or self._tasks:
            if self.stopping and self._stop_now():
                return
            self._dispatch()
            if reading:
                self._grant()
            try:
                event = self._next_event()
            except queue.Empty:
                continue
            kind = event[0]
            if kind == "entry":
                self._granted -= 1
                yield from self._accept(event[1], event[2])
            elif kind == "record":
                yield from self._finish(event[1], event[2])
            elif kind == "dropped":
                self._drop(event[1])
            elif kind == "died":
                yield from self._recover(event[1])
            elif kind == "end":
                reading, self.total = False, event[1]
            elif kind == "error":
                raise event[1]

    def _next_event(self) -> tuple[Any, ...]:
        """The next event, or queue.Empty after a short wait (TICK, or until a host is ready).

        While URLs are out with the workers the loop naps rather than blocks on the queue: a
        worker's post then never has to wake it, and it takes whatever gathered meanwhile in
        one go (on this machine a thread's wake-up costs more than a request; a nap costs at
        most TICK of latency). With nothing out, only the reader can answer: wait for it.
        """
        timeout = min(0.25, max(0.0, self._wake - time.monotonic()))
        if not self._tasks:
            return self._events.get(timeout=timeout)
        try:
            return self._events.get_nowait()
        except queue.Empty:
            time.sleep(min(TICK, timeout))
            raise

    def _stop_now(self) -> bool:
        """While stopping: drop what has not started; True once nothing is left to wait for."""
        for task in self._queues.drain():
            del self._tasks[task.id]
        for task_id in self._executor.cancel_pending():
            del self._tasks[task_id]
        if self._tasks and time.monotonic() < self._deadline:
            return False
        self.abandoned = bool(self._tasks)
        return True

    def _read(self, entries: Iterable[Entry]) -> None:
        count = 0
        try:
            for entry in entries:
                while not self._credits.acquire(timeout=0.25):
                    if self.stopping:
                        return
                if self.stopping:
                    return
                count += 1
                self._events.put(("entry", entry, self._known(entry)))
            self._events.put(("end", count))
        except Exception as exc:  # e.g. stdin became unreadable: end the run with that error
            self._events.put(("error", exc))

    def _known(self, entry: Entry) -> Known | None:
        """The index's record of this URL, looked up here in the reader, off the main loop."""
        return None if entry.error is not None else self.index.get(redact(entry.url))

    def _accept(self, entry: Entry, known: Known | None) -> Iterator[Record]:
        if self.stopping:
            return
        if entry.error is not None:
            yield self._emit(
                failed(entry.url, f"{entry.error} ({entry.where})", reason=entry.error)
            )
            return
        if self.settings.resume and known and known.outcome in ("fetched", "not_modified"):
            yield self._emit(_skipped(redact(entry.url), known))
            return
        self._next_id += 1
        host = host_of(entry.url)
        task = Task(self._next_id, entry.url, host, known, self._validators(known))
        self._tasks[task.id] = task
        self._queues.add(host, task)

    def _validators(self, known: Known | None) -> Validators | None:
        if not (self.settings.refresh and known and known.path):
            return None
        if not (known.etag or known.last_modified):
            return None
        if not (Path(self.settings.out) / known.path).is_file():
            return None  # the saved copy is gone: a 304 would leave nothing on disk
        return Validators(known.etag, known.last_modified)

    def _dispatch(self) -> None:
        """Hand ready tasks to free workers; note when a held-back host becomes ready."""
        self._wake = float("inf")
        while self._queues and self._executor.free > 0 and not self.stopping:
            task, self._wake = self._queues.pop_ready(time.monotonic())
            if task is None:
                break
            self._executor.submit(task)
        self._executor.flush()

    def _grant(self) -> None:
        """Let the reader run ahead a bounded distance; further while host limits idle workers."""
        # after _dispatch, queued tasks next to a free worker are held back by host limits
        # (a worker idle for want of input is not: then the usual distance is enough)
        held_back = bool(self._queues) and self._executor.free > 0
        goal = self._read_ahead
        if held_back:  # widen step by step, up to max_queued
            goal = min(self.settings.max_queued, len(self._queues) + self._granted + goal)
        wanted = goal - len(self._queues) - self._granted
        if wanted >= min(goal, self._grant_step):  # in steps: the reader wakes once per step
            self._granted += wanted
            self._credits.release(wanted)

    def _finish(self, task_id: int, record: Record) -> Iterator[Record]:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return  # a late answer for a task already settled
        self._executor.done(task_id)
        self._queues.finished(task.host)
        yield self._emit(record)

    def _drop(self, task_id: int) -> None:
        """A worker dropped a task it had not started (a stop came)."""
        task = self._tasks.pop(task_id, None)
        if task is not None:
            self._executor.done(task_id)
            self._queues.finished(task.host)

    def _emit(self, record: Record) -> Record:
        self.index.put(record)
        return record

    def _recover(self, slot: int) -> Iterator[Record]:
        """A worker process died: retry its URLs once elsewhere, then give up on them."""
        for task_id in self._executor.lost(slot):
            task = self._tasks[task_id]
            lost = task.lost + 1  # counted as an attempt: the worker may have sent it
            if task.lost or self.stopping:
                yield from self._finish(task_id, failed(task.url, WORKER_DIED, attempts=lost))
            else:
                retry = self._tasks[task_id] = replace(task, lost=lost)
                self._queues.finished(task.host)
                self._queues.add(task.host, retry, first=True)


def _skipped(url: str, known: Known) -> Record:
    return Record(
        url=url,
        outcome="skipped",
        path=known.path,
        bytes=known.bytes,
        sha256=known.sha256,
        content_type=known.content_type,
        encoding=known.encoding,
    )
