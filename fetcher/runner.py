"""A run: entries in, one record per entry out, as each finishes.

One inbox carries everything the main thread reacts to: entries read (in batches, from the
intake's reader thread), the end of input, and what the pool posts (records, tasks dropped
or lost). The main thread sleeps until it has reason to look (a pool whose waiting tasks
run low, a batch read, a host's turn, the end), then takes everything posted meanwhile in
one go: a busy run wakes once per few records, not for each, and no one naps on a timer.
The main thread alone touches the index and decides; `plan` says what each entry needs,
and the pool (fetcher.pools) runs the tasks. Intake is bounded by credits, so a list of
millions of URLs never sits in memory, and a task is handed to the pool only when it has
room, so stopping never strands work queued inside a pool.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from fetcher.inputs import Batch, Entry
from fetcher.plan import plan
from fetcher.politeness import HostQueues
from fetcher.pools import pool_kind
from fetcher.pools.base import (
    WORKER_DIED,
    Dropped,
    Failed,
    Finished,
    Lost,
    Pool,
    Poster,
    Returned,
    unexpected,
)
from fetcher.records import Known, Record, failed
from fetcher.settings import Settings
from fetcher.store import Index
from fetcher.task import Task

LOOK = 0.25  # seconds the loop sleeps at most: a stop it was not woken for is seen by then


@dataclass(frozen=True)
class Read:
    """Entries the reader took in, each with what the index knows of it."""

    entries: Sequence[tuple[Entry, Known | None]]


@dataclass(frozen=True)
class InputEnd:
    """The input is read to its end: `count` entries."""

    count: int


@dataclass(frozen=True)
class InputFailed:
    """The input could not be read on (e.g. stdin became unreadable): the run ends with it."""

    error: Exception


Event = Read | InputEnd | InputFailed | Finished | Dropped | Lost | Returned | Failed


class Credits:
    """How many more entries the reader may post: granted by the run, taken by the reader."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition(threading.Lock())

    def grant(self, count: int) -> None:
        with self.changed:
            self.count += count
            self.changed.notify()

    def take(self, most: int, stopping: Callable[[], bool]) -> int:
        """Up to `most` credits, waiting for the first; 0 once `stopping()`."""
        with self.changed:
            while not self.count:
                if stopping():
                    return 0
                self.changed.wait(LOOK)
            taken = min(most, self.count)
            self.count -= taken
            return taken


class Intake:
    """The reader thread: reads entries at most a bounded distance ahead of the run (credits
    the run grants), looks them up in the index off the main loop, and posts them, a batch
    (what one read brought, as far as the credits go) per lookup and per post."""

    def __init__(
        self,
        batches: Iterable[Batch],
        lookup: Callable[[Sequence[str]], list[Known | None]],
        post: Poster[Event],
        stopping: Callable[[], bool],
    ) -> None:
        self.lookup, self.post, self.stopping = lookup, post, stopping
        self.credits = Credits()
        self.granted = 0  # credits given and not yet used: entries the reader may still read
        self.thread = threading.Thread(
            target=self._read, args=(batches,), daemon=True, name="fetcher-reader"
        )

    def start(self) -> None:
        self.thread.start()

    def grant(self, count: int) -> None:
        self.granted += count
        self.credits.grant(count)

    def took(self, count: int) -> None:
        """Entries from the reader arrived (the main loop's count of credits used)."""
        self.granted -= count

    def _read(self, batches: Iterable[Batch]) -> None:
        count = 0
        try:
            for batch in batches:
                while batch:
                    taken = self.credits.take(len(batch), self.stopping)
                    if not taken or self.stopping():
                        return
                    count += taken
                    self._post(batch[:taken])
                    batch = batch[taken:]
            self.post(InputEnd(count), wake=True)
        except Exception as exc:
            self.post(InputFailed(exc), wake=True)

    def _post(self, entries: Batch) -> None:
        names = [entry.name for entry in entries if entry.error is None]
        known = iter(self.lookup(names))
        pairs = [(e, None if e.error is not None else next(known)) for e in entries]
        self.post(Read(pairs), wake=True)


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

    def __init__(self, batches: Iterable[Batch], settings: Settings, index: Index) -> None:
        self.settings, self.index = settings, index
        self.total: int | None = None
        self.listed = 0  # entries read so far (the total's count while it is not known)
        self.stopping = False
        self.abandoned = False
        self._deadline = float("inf")
        self._inbox: collections.deque[Event] = collections.deque()  # posted, not yet seen
        self._bell: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token wakes the loop
        self._listening = False  # set while the loop sleeps waiting on any event at all
        self._intake = Intake(batches, index.get, self._post, lambda: self.stopping)
        self.pool_kind = pool_kind(settings)  # what its pools can do: asked, never named
        self._gate = self.pool_kind.new_gate(settings)
        self._stopped = self.pool_kind.new_stop_flag()
        self._queues = HostQueues(
            settings.per_host, settings.delay, self._gate, remote=self.pool_kind.remote
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

    @property
    def connections(self) -> int | None:
        """TCP connections the run opened, in every worker process (None on a cluster, whose
        workers keep their own count)."""
        return None if self.pool_kind.remote else self._gate.connections()

    def stop(self) -> None:
        """Safe in a signal handler: it sets flags and wakes the loop (SimpleQueue.put is
        reentrant)."""
        if self.stopping:
            self._deadline = 0.0
        else:
            self.stopping = True
            self._stopped.value = 1  # tasks waiting in a pool are dropped, not started
            self._deadline = time.monotonic() + self.settings.grace
        self._bell.put(None)

    def _post(self, event: Event, *, wake: bool = False) -> None:
        """Any thread: hand the loop an event; wake it if asked to, or if it listens."""
        self._inbox.append(event)
        if wake or self._listening:
            self._bell.put(None)

    def __iter__(self) -> Iterator[Record]:
        pool = self.pool_kind.open(self.settings, self._post, self._gate, self._stopped)
        try:
            self._intake.start()
            yield from self._loop(pool, read_ahead=2 * pool.capacity + 16)
        finally:
            self.stopping = True  # also when the consumer stops early: the reader quits,
            self._stopped.value = 1  # and tasks waiting in the pool are dropped, not started
            pool.close(wait=not self.abandoned)

    def _loop(self, pool: Pool, read_ahead: int) -> Iterator[Record]:
        reading = True
        while reading or self._tasks:
            if self.stopping and self._stop_now():
                return
            held_back = self._dispatch(pool)
            if reading:
                self._grant(read_ahead, held_back)
            self.index.flush()
            self._wait(listen=held_back or self.stopping)
            while self._inbox:
                match event := self._inbox.popleft():
                    case Read(entries):
                        self._intake.took(len(entries))
                        self.listed += len(entries)
                        for entry, known in entries:
                            yield from self._accept(entry, known)
                    case Finished(task_id, record):
                        yield from self._finish(pool, task_id, record)
                    case Dropped(task_id):
                        self._settle(pool, task_id)
                    case Lost(task_ids):
                        yield from self._recover(pool, task_ids)
                    case Returned(task_ids):
                        self._take_back(task_ids)
                    case InputEnd(count):
                        reading, self.total = False, count
                    case InputFailed(error) | Failed(error):
                        raise error
                    case _:
                        unexpected(event)

    def _wait(self, listen: bool) -> None:
        """Sleep until there is reason to look: a ring, a host's turn, or LOOK at the latest.

        Pools ring when their waiting tasks run low, the reader with each batch: a busy run
        wakes once per few records, not for each (on this machine a thread's wake-up costs
        about what a request does). `listen`: any event at all may let work go on (a task
        held back by --per-host waits for a record of its host; a stop waits for the last
        records), so each one rings.
        """
        if not self._inbox:
            self._listening = listen
            if not self._inbox:  # (an event posted before the flag was up rang no one)
                timeout = min(LOOK, max(0.0, self._wake - time.monotonic()))
                with contextlib.suppress(queue.Empty):
                    self._bell.get(timeout=timeout)
            self._listening = False
        with contextlib.suppress(queue.Empty):
            while True:  # rings that came while the loop was awake: this look answers them
                self._bell.get_nowait()

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

    def _dispatch(self, pool: Pool) -> bool:
        """Hand ready tasks to the pool while it has room; note when a held-back host is ready.
        True if tasks wait while workers idle (host limits hold them back)."""
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
        if pool.free > 0 and not self.stopping:  # nothing (more) ready for its room
            pool.rebalance()
        if self.pool_kind.remote:  # (a cluster's threads are not ours to count)
            return bool(self._queues) and pool.free > 0
        idle = max(0, self.settings.concurrency - (len(self._tasks) - len(self._queues)))
        self._idle.now(min(capped, idle))
        return bool(self._queues) and idle > 0

    def _grant(self, read_ahead: int, held_back: bool) -> None:
        """Let the reader run ahead a bounded distance; further while host limits idle workers
        (`held_back`: tasks wait while fewer are out than there are workers, so the reader
        must find other hosts; a pool's room for waiting tasks is no idle worker)."""
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
                self._queue_again(retry)

    def _take_back(self, task_ids: tuple[int, ...]) -> None:
        """Tasks a worker gave back unstarted: queued again, first in their hosts' lines."""
        for task_id in task_ids:
            if (task := self._tasks.get(task_id)) is not None:  # (settled ones passed over)
                self._queue_again(task)

    def _queue_again(self, task: Task) -> None:
        """A task that was out (and is no longer) back at the front of its host's line."""
        self._queues.finished(task.host)
        self._queues.add(task.host, task, first=True)
