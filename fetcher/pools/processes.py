"""--processes: our own group of worker processes, each running --threads threads.

Not `multiprocessing.Pool`: the stock Pool hangs forever when a worker dies mid-task and
runs one task at a time per process. Here the parent knows exactly which tasks each worker
holds; when one dies, a relay thread starts a new worker in its place and posts the dead
one's tasks as `Lost` (the run retries them once elsewhere), and the run goes on.

A task sent to a worker stays there until it finishes, or until the worker gives it back
unstarted: each worker holds tasks waiting beside its running ones (at least BATCH), so that
tasks go out and records come back in batches, not one message per URL; when the run has
nothing ready for a worker whose threads idle while tasks wait in another, the pool asks
that one to give back what waits (`rebalance`), and the run deals it out again. So no task
waits in one worker while another could run it, at the end of a list above all.

Each worker sends its records through a pipe of its own, written by its threads directly:
no queue's feeder thread in between, and a worker killed in the middle of a message
garbles nothing but its own pipe (a queue shared by all workers would be left locked by
it, and the others would hang). The relay waits on every worker's pipe and on its process
at once, so it hears of a death the moment it happens.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from fetcher.errors import UsageError, leave
from fetcher.politeness import HostGate
from fetcher.pools.base import (
    CONTEXT,
    REIMPORTED,
    Failed,
    Lost,
    PoolEvent,
    Post,
    Returned,
    waiting,
)
from fetcher.pools.threads import ThreadPool
from fetcher.settings import Settings
from fetcher.task import Task

if TYPE_CHECKING:
    from fetcher.pools.warm import Server

UNGUARDED = (
    "processes= starts worker processes that import the calling script again, and this one"
    ' runs fetcher when imported: put that code under `if __name__ == "__main__":`'
)
PARENT_POLL = 0.5  # seconds between a worker process's looks at whether its parent lives
RELAY_WAIT = 0.1  # seconds the relay waits before it looks whether the pool was closed
REAP_WAIT = 5.0  # seconds the relay waits for a worker that has closed its sentinel to end
RECLAIM = "reclaim"  # to a worker: give back the tasks you have not started
ORPHANED = 255  # the exit status multiprocessing gives a worker whose forkserver has died


@dataclass
class Worker:
    """One worker process, the pipes to and from it, and the tasks it holds."""

    process: BaseProcess
    inbox: Any  # a multiprocessing Queue: its feeder thread writes, so a send never blocks
    results: Connection | None  # None once read to its end (the worker has ended)
    running: Any  # shared: the id of the task each of its threads runs (0: none)
    tasks: set[int] = field(default_factory=set)
    hosts: Counter[str] = field(default_factory=Counter)  # how many of its tasks each host has
    buried: bool = False  # its end was dealt with (and no new worker took its place)
    reclaiming: bool = False  # asked to give back its waiting tasks, not yet answered


class ProcessPool:
    """Tasks go to the least loaded worker, in one message per worker per `submit`."""

    def __init__(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> None:
        self.settings, self.post, self.gate, self.stopped = settings, post, gate, stopped
        self.capacity = settings.concurrency + settings.processes * waiting(settings)
        self.workers: list[Worker] = []
        self.where: dict[int, int] = {}  # task id → its worker's slot
        self.host: dict[int, str] = {}  # task id → its host, while a worker holds it
        self.lock = threading.Lock()  # the main loop and the relay both change the above
        self.closing = threading.Event()  # set under the lock: no worker is replaced after it
        self.closed = threading.Event()  # the workers are gone: the relay stops
        self.relay = threading.Thread(target=self._relay, name="fetcher-relay", daemon=True)
        self.server: Server | None = None  # where workers are forked from (None: spawned)

    @property
    def free(self) -> int:
        return self.capacity - len(self.where)

    def submit(self, tasks: Sequence[Task]) -> None:
        if not self.workers:  # started with the first task: a run with nothing to fetch starts none
            self._start_all()
        with self.lock:
            batches: list[list[Task]] = [[] for _ in self.workers]
            runs = [s for s, count in enumerate(self._shares(len(tasks))) for _ in range(count)]
            for task, slot in zip(tasks, runs, strict=True):
                if self.workers[slot].hosts[task.host] >= self._share(slot, task.host):
                    slot = self._slot_for(task.host, batches)
                batches[slot].append(task)
                self._hold(slot, task)
            for worker, batch in zip(self.workers, batches, strict=True):
                if batch:
                    worker.inbox.put(batch)  # one pickle, one pipe write

    def _shares(self, count: int) -> list[int]:
        """How many of `count` new tasks each worker takes: the least loaded first, until
        the loads are even. Each takes a run of consecutive tasks, not every n-th: the
        tasks come round-robin by host, and every n-th would send one host's to one worker
        (a slow host would then hold half the threads while the others idle)."""
        shares = [0] * len(self.workers)
        for _ in range(count):
            slot = min(range(len(shares)), key=lambda s: len(self.workers[s].tasks) + shares[s])
            shares[slot] += 1
        return shares

    def _slot_for(self, host: str, batches: list[list[Task]]) -> int:
        """For a task whose worker in the run has its part of `host` already: the least
        loaded worker that may take one more of `host`'s tasks (a host's --per-host is split
        between the workers, whose connection pools are their own)."""
        free = [s for s, w in enumerate(self.workers) if w.hosts[host] < self._share(s, host)]
        # (none free: not while the run keeps --per-host, which the parts add up to)
        candidates = free or range(len(self.workers))
        return min(candidates, key=lambda s: len(self.workers[s].tasks) + len(batches[s]))

    def _share(self, slot: int, host: str) -> int | float:
        """The part of --per-host worker `slot` may hold of `host`'s tasks at once: the
        workers' parts add up to it, so their connections to the host never exceed it."""
        per_host = self.settings.per_host
        if per_host is None:
            return float("inf")
        count = len(self.workers)
        turn = (slot - HostGate.slot(host)) % count  # which worker gets a remainder varies
        return per_host // count + (turn < per_host % count)

    def _hold(self, slot: int, task: Task) -> None:
        worker = self.workers[slot]
        worker.tasks.add(task.id)
        worker.hosts[task.host] += 1
        self.where[task.id], self.host[task.id] = slot, task.host

    def _let_go(self, worker: Worker, task_id: int) -> None:
        """`worker` no longer holds the task (done, or given back)."""
        worker.tasks.discard(task_id)
        self.where.pop(task_id, None)
        host = self.host.pop(task_id, None)
        if host is not None:
            worker.hosts[host] -= 1
            if worker.hosts[host] <= 0:
                del worker.hosts[host]

    def done(self, task_id: int) -> None:
        with self.lock:
            slot = self.where.get(task_id)
            if slot is not None:
                self._let_go(self.workers[slot], task_id)

    def rebalance(self) -> None:
        """A worker's threads idle while tasks wait in another: the fullest gives them back
        (one request at a time), and the run deals them out again, least loaded first."""
        threads = self.settings.threads
        with self.lock:
            live = [w for w in self.workers if not w.buried]
            if not live or min(len(w.tasks) for w in live) >= threads:
                return
            fullest = max(live, key=lambda w: len(w.tasks))
            if len(fullest.tasks) <= threads or fullest.reclaiming:
                return
            fullest.reclaiming = True
        fullest.inbox.put(RECLAIM)

    def close(self, wait: bool) -> None:
        with self.lock:
            self.closing.set()
        for worker in self.workers:
            worker.inbox.put(None)
        deadline = time.monotonic() + (5.0 if wait else 0.0)
        for worker in self.workers:  # the relay reads their last records meanwhile, so that
            worker.process.join(max(0.0, deadline - time.monotonic()))  # none blocks on a
            if worker.process.is_alive():  # full pipe
                worker.process.kill()
                worker.process.join(REAP_WAIT)  # reaped by its server before that ends
        self.closed.set()
        if self.relay.is_alive():
            self.relay.join()
        if self.server is not None:
            self.server.stop()

    def _start_all(self) -> None:
        self.server = _server(self.settings)
        self.workers = [self._start(slot) for slot in range(self.settings.processes)]
        self.relay.start()

    def _start(self, slot: int) -> Worker:
        inbox, (results, writer) = CONTEXT.Queue(), CONTEXT.Pipe(duplex=False)
        running = CONTEXT.RawArray("q", self.settings.threads)
        start, stdio = (CONTEXT.Process, None) if self.server is None else self.server.worker()
        process = start(
            target=worker_main,
            args=(self.settings, inbox, writer, running, self.gate, self.stopped, stdio),
            name=f"fetcher-worker-{slot}",
            daemon=True,
        )
        process.start()
        writer.close()  # the worker holds the only writing end: its death ends the pipe
        return Worker(process, inbox, results, running)

    def _relay(self) -> None:
        """Pass records to the run; replace a worker that died (after its last records).
        Whatever goes wrong here ends the run with it, rather than leave it waiting."""
        try:
            while not self.closed.is_set():
                with self.lock:
                    watched = [(s, w) for s, w in enumerate(self.workers) if not w.buried]
                    if not watched and self.closing.is_set():
                        return  # every worker has ended, and none will take their place
                handles = [w.results for _, w in watched if w.results is not None]
                ready = wait(handles + [w.process.sentinel for _, w in watched], RELAY_WAIT)
                for slot, worker in watched:
                    if worker.results in ready:
                        self._receive(worker)
                    if worker.process.sentinel in ready:
                        self._bury(slot, worker)
        except Exception as exc:
            self.post(Failed(exc), wake=True)

    def _receive(self, worker: Worker) -> None:
        """Post one message of records; at the pipe's end (the worker has ended, or died in
        the middle of a message) close it."""
        assert worker.results is not None
        try:
            events: list[PoolEvent] = worker.results.recv()
        except (EOFError, OSError):
            worker.results.close()
            worker.results = None
            return
        for number, event in enumerate(events, start=1):
            if isinstance(event, Returned):
                self._returned(worker, event.task_ids)
            self.post(event, wake=number == len(events))

    def _returned(self, worker: Worker, task_ids: tuple[int, ...]) -> None:
        """Tasks the worker gave back are no longer its own: here, before the run hears of
        them, so that a death of the worker right after cannot post them as `Lost` too."""
        with self.lock:
            worker.reclaiming = False
            for task_id in task_ids:
                self._let_go(worker, task_id)

    def _bury(self, slot: int, worker: Worker) -> None:
        """A worker ended: post what it sent before, then start a new one in its place."""
        pid = worker.process.pid
        if worker.process.exitcode == ORPHANED and pid is not None:
            # its forkserver died (killed), not necessarily the worker, which would hold its
            # pipe open until the run ends: it goes too (the next start makes a new server)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        while worker.results is not None:
            self._receive(worker)
        worker.buried = True
        # its sentinel is ready as the process tears down, a moment before the process can
        # be reaped: until then exitcode is None, and a worker that found itself importing
        # the user's script would pass for one that died
        worker.process.join(REAP_WAIT)
        if worker.process.exitcode == REIMPORTED:
            raise UsageError(UNGUARDED)
        for event in self._replace(slot):
            self.post(event, wake=True)

    def _replace(self, slot: int) -> tuple[Lost, Returned] | tuple[()]:
        """A new worker in a dead one's place; the tasks the dead one held: those it was
        running are `Lost` (retried once), those it had not started `Returned` (nothing,
        and no new worker, once the pool is closing)."""
        with self.lock:
            if self.closing.is_set():
                return ()
            dead = self.workers[slot]
            for task_id in dead.tasks:
                del self.where[task_id], self.host[task_id]
            # with a new inbox: the old one may hold a half-read batch
            self.workers[slot] = self._start(slot)
        running = dead.tasks.intersection(dead.running)
        return Lost(tuple(running)), Returned(tuple(dead.tasks - running))


def worker_main(
    settings: Settings,
    inbox: Any,
    results: Connection,
    running: Any,
    gate: HostGate,
    stopped: Any,
    stdio: tuple[int | None, int | None] | None,
) -> None:
    """A worker process: fetch what the parent sends with --threads threads, until None.
    `stdio`: the run's standard output and error, passed to a forked worker (a spawned one
    inherited them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a run stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in zip((1, 2), stdio or (None, None), strict=True):
        if fd is not None:
            os.dup2(fd, target)
            os.close(fd)
    outbox = Outbox(results)
    threading.Thread(
        target=_watch_parent, args=(outbox,), name="fetcher-orphan", daemon=True
    ).start()
    threads = ThreadPool(settings, outbox.post, gate, stopped, running=running)
    while (message := inbox.get()) is not None:
        if message == RECLAIM:
            outbox.post(Returned(threads.take_back()), wake=True)
        else:
            threads.submit(message)
    threads.close(wait=True)
    outbox.send()
    leave(0)  # the records are in the pipe: no teardown, which the parent would wait for


class Outbox:
    """A worker's records on their way to the parent: gathered, and sent in one message when
    a post asks to wake the run (its threads' waiting tasks run low), or PARENT_POLL after."""

    def __init__(self, results: Connection) -> None:
        self.results = results
        self.events: list[PoolEvent] = []
        self.lock = threading.Lock()  # also keeps two threads' messages from interleaving

    def post(self, event: PoolEvent, *, wake: bool = False) -> None:
        with self.lock:
            self.events.append(event)
        if wake:
            self.send()

    def send(self) -> None:
        with self.lock:
            events, self.events = self.events, []
            if not events:
                return
            try:
                self.results.send(events)
            except OSError:  # the parent is gone: nobody is left to read any record
                os._exit(1)


WARM_PYTHONS = ((3, 10), (3, 14))  # where fetcher.pools.warm's use of multiprocessing's
# private forkserver interface (ForkServer's attributes, Popen._launch) was checked: 3.10-3.13


def _server(settings: Settings) -> Server | None:
    """A forkserver for a pool's workers, where the platform has one and the Python is one
    whose forkserver internals warm.py was checked against (else they are spawned)."""
    low, high = WARM_PYTHONS
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    if not low <= sys.version_info[:2] < high:
        return None
    from fetcher.pools.warm import Server

    return Server(settings)


def _watch_parent(outbox: Outbox) -> None:
    """End this worker within PARENT_POLL seconds of its parent's death (even by kill -9),
    whatever its threads are doing: nobody is left to read its records. The parent is the
    run, whichever process forked this one: multiprocessing's sentinel of it is a pipe only
    the run holds open, so one that died while this process started is noticed too.
    Meanwhile, send records that have waited since the last look."""
    parent = multiprocessing.parent_process()
    assert parent is not None  # (a worker process)
    while not wait([parent.sentinel], PARENT_POLL):
        outbox.send()
    os._exit(1)


__pool__ = ProcessPool
