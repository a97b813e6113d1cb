"""A run: entries in, one record per entry out, as each finishes.

One event queue carries everything the main thread reacts to: entries read (from the
intake's reader thread), the end of input, and what the pool posts (records, tasks dropped
or lost). The main thread alone touches the index and decides; `plan` says what each entry
needs, and the pool (fetcher.pools) runs the tasks. Intake is bounded by credits, so a list
of millions of URLs never sits in memory, and a task is handed to the pool only when it has
room, so stopping never strands work queued inside a pool.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from fetcher.inputs import Entry
from fetcher.plan import plan
from fetcher.politeness import HostQueues
from fetcher.pools import new_gate, open_pool
from fetcher.pools.base import (
    WORKER_DIED,
    Dropped,
    Failed,
    Finished,
    Lost,
    Pool,
    stop_flag,
    unexpected,
)
from fetcher.records import Known, Record, failed
from fetcher.settings import Settings
from fetcher.store import Index
from fetcher.task import Task

TICK = 0.002  # seconds the main loop naps when it has nothing to do
LOOK = 0.25  # seconds between the loop's looks at a stop while it waits for the reader


@dataclass(frozen=True)
class Read:
    """An entry the reader took in, with what the index knows of it."""

    entry: Entry
    known: Known | None


@dataclass(frozen=True)
class InputEnd:
    """The input is read to its end: `count` entries."""

    count: int


@dataclass(frozen=True)
class InputFailed:
    """The input could not be read on (e.g. stdin became unreadable): the run ends with it."""

    error: Exception


Event = Read | InputEnd | InputFailed | Finished | Dropped | Lost | Failed


class Intake:
    """The reader thread: reads entries at most a bounded distance ahead of the run (credits
    the run grants), looks each up in the index off the main loop, and posts them."""

    def __init__(
        self,
        entries: Iterable[Entry],
        lookup: Callable[[str], Known | None],
        post: Callable[[Event], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.lookup, self.post, self.stopping = lookup, post, stopping
        self.credits = threading.Semaphore(0)
        self.granted = 0  # credits given and not yet used: entries the reader may still read
        self.thread = threading.Thread(
            target=self._read, args=(entries,), daemon=True, name="fetcher-reader"
        )

    def start(self) -> None:
        self.thread.start()

    def grant(self, count: int) -> None:
        self.granted += count
        self.credits.release(count)

    def took(self) -> None:
        """An entry from the reader arrived (the main loop's count of credits used)."""
        self.granted -= 1

    def _read(self, entries: Iterable[Entry]) -> None:
        count = 0
        try:
            for entry in entries:
                while not self.credits.acquire(timeout=LOOK):
                    if self.stopping():
                        return
                if self.stopping():
                    return
                count += 1
                known = None if entry.error is not None else self.lookup(entry.name)
                self.post(Read(entry, known))
            self.post(InputEnd(count))
        except Exception as exc:
            self.post(InputFailed(exc))


class Idle:
    """Worker time lost to one cause: `now(n)` says n workers are idle for it from now on."""

    def __init__(self, workers: int) -> None:
        self.workers, self.started = workers, time.monotonic()
        self.since, self.count, self.lost = self.started, 0, 0.0

    def now(self, count: int) -> None:
        if count != self.count:
            moment = time.monotonic()
            self.lost += self.count * (moment - self.since)
            self.since, self.count = moment, count

    def share(self) -> float:
        self.now(0)
        elapsed = time.monotonic() - self.started
        return self.lost / (self.workers * elapsed) if elapsed > 0 else 0.0


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
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._intake = Intake(entries, index.get, self._events.put, lambda: self.stopping)
        self._gate = new_gate(settings)
        self._stopped = stop_flag()
        self._queues = HostQueues(
            settings.per_host, settings.delay, self._gate, remote=settings.backend == "dask"
        )
        self._tasks: dict[int, Task] = {}
        self._last_id = 0
        self._wake = 0.0
        self._idle = Idle(settings.concurrency)

    @property
    def idle_by_per_host(self) -> float:
        """The share of the workers' time (0 to 1) they sat idle while --per-host alone held
        back URLs that were waiting: how much a higher --per-host could have gained."""
        return self._idle.share()

    def stop(self) -> None:
        """Safe in a signal handler: it only sets flags, which the loop reads 4 times a second."""
        if self.stopping:
            self._deadline = 0.0
        else:
            self.stopping = True
            self._stopped.value = 1  # tasks waiting in a pool are dropped, not started
            self._deadline = time.monotonic() + self.settings.grace

    def __iter__(self) -> Iterator[Record]:
        pool = open_pool(self.settings, self._events.put, self._gate, self._stopped)
        try:
            self._intake.start()
            yield from self._loop(pool, read_ahead=2 * pool.capacity + 16)
        finally:
            self.stopping = True  # also when the consumer stops early: the reader quits
            pool.close(wait=not self.abandoned)

    def _loop(self, pool: Pool, read_ahead: int) -> Iterator[Record]:
        reading = True
        while reading or self._tasks:
            if self.stopping and self._stop_now():
                return
            self._dispatch(pool)
            if reading:
                self._grant(read_ahead, held_back=bool(self._queues) and pool.free > 0)
            try:
                event = self._next_event()
            except queue.Empty:
                continue
            match event:
                case Read(entry, known):
                    self._intake.took()
                    yield from self._accept(entry, known)
                case Finished(task_id, record):
                    yield from self._finish(pool, task_id, record)
                case Dropped(task_id):
                    self._settle(pool, task_id)
                case Lost(task_ids):
                    yield from self._recover(pool, task_ids)
                case InputEnd(count):
                    reading, self.total = False, count
                case InputFailed(error) | Failed(error):
                    raise error
                case _:
                    unexpected(event)

    def _next_event(self) -> Event:
        """The next event, or queue.Empty after a short wait (TICK, or until a host is ready).

        While URLs are out with the workers the loop naps rather than blocks on the queue: a
        worker's post then never has to wake it, and it takes whatever gathered meanwhile in
        one go (on this machine a thread's wake-up costs more than a request; a nap costs at
        most TICK of latency). With nothing out, only the reader can answer: wait for it.
        """
        timeout = min(LOOK, max(0.0, self._wake - time.monotonic()))
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
        if self._tasks and time.monotonic() < self._deadline:
            return False
        self.abandoned = bool(self._tasks)
        return True

    def _accept(self, entry: Entry, known: Known | None) -> Iterator[Record]:
        if self.stopping:
            return
        planned = plan(entry, known, self.settings, self._last_id + 1)
        if isinstance(planned, Record):
            yield self._emit(planned)
            return
        self._last_id = planned.id
        self._tasks[planned.id] = planned
        self._queues.add(planned.host, planned)

    def _dispatch(self, pool: Pool) -> None:
        """Hand ready tasks to the pool while it has room; note when a held-back host is ready."""
        self._wake = float("inf")
        ready: list[Task] = []
        capped = 0
        while self._queues and pool.free > len(ready) and not self.stopping:
            task, self._wake = self._queues.pop_ready(time.monotonic())
            if task is None:
                capped = self._queues.capped
                break
            ready.append(task)
        if ready:
            pool.submit(ready)
        if self.settings.backend != "dask":  # (a cluster's threads are not ours to count)
            running = len(self._tasks) - len(self._queues)
            self._idle.now(min(capped, max(0, self.settings.concurrency - running)))

    def _grant(self, read_ahead: int, held_back: bool) -> None:
        """Let the reader run ahead a bounded distance; further while host limits idle workers
        (`held_back`: tasks wait next to a free worker, so the reader must find other hosts)."""
        queued, granted = len(self._queues), self._intake.granted
        goal = read_ahead
        if held_back:  # widen step by step, up to max_queued
            goal = min(self.settings.max_queued, queued + granted + goal)
        wanted = goal - queued - granted
        if wanted >= min(goal, read_ahead // 2):  # in steps: the reader wakes once per step
            self._intake.grant(wanted)

    def _finish(self, pool: Pool, task_id: int, record: Record) -> Iterator[Record]:
        if self._settle(pool, task_id):
            yield self._emit(record)

    def _settle(self, pool: Pool, task_id: int) -> bool:
        """Forget a task the pool is done with; False if it was settled already (a late
        answer, or a task dropped at a stop)."""
        task = self._tasks.pop(task_id, None)
        if task is None:
            return False
        pool.done(task_id)
        self._queues.finished(task.host)
        return True

    def _emit(self, record: Record) -> Record:
        self.index.put(record)
        return record

    def _recover(self, pool: Pool, task_ids: tuple[int, ...]) -> Iterator[Record]:
        """A worker process died holding these: retry each once elsewhere, then give up."""
        for task_id in task_ids:
            task = self._tasks.get(task_id)
            if task is None:
                continue  # its record came before the worker died
            lost = task.lost + 1  # counted as an attempt: the worker may have sent it
            if task.lost or self.stopping:
                record = failed(task.name, WORKER_DIED, attempts=lost)
                yield from self._finish(pool, task_id, record)
            else:
                self._tasks[task_id] = retry = replace(task, lost=lost)
                self._queues.finished(task.host)
                self._queues.add(task.host, retry, first=True)
