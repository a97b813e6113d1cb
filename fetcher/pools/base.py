"""What every pool shares: the protocol the run drives, the events pools post, constants.

A pool takes tasks (`submit`) while it has room (`free`), and for every task posts an event
back: `Finished` with its record, `Dropped` if a stop came before it started, or (a worker
process having died with it) its id in a `Lost`. A `Lost` may name a task whose `Finished`
is already on its way: the run settles each task once and ignores ids it has settled. The
run calls `done` for each task it settles, which frees its room. A task may also come back
in a `Returned`, unstarted and its room already free (`rebalance`: so that an idle worker
can take it); the run queues it again. `Failed` ends the run.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

from fetcher.errors import UsageError
from fetcher.politeness import HostGate
from fetcher.records import Record
from fetcher.settings import Settings
from fetcher.task import Task

# what shared memory, locks and queues are made with; where there is no forkserver, worker
# processes start from it too (fork + threads is unsafe): see processes.py and warm.py
CONTEXT = multiprocessing.get_context("spawn")
# tasks a pool holds waiting beside its running ones, at least (else one per thread): they go
# out, and records come back, about half as many at a time, and on this machine every such
# hand-off costs a thread's wake-up and a fight for the GIL. 2,000 pages, -t 1: CPU 1.67 s
# with 4 waiting, 1.58 s with 32 (the bare stack's: 1.56 s); -p 2 -t 4: 0.75 of the bare
# stack at one per thread, 0.88-0.92 at 32 (interleaved runs, tmpfs)
BATCH = 32
WORKER_DIED = "worker died"
REIMPORTED = 78  # exit status of a worker that found itself importing the user's script again


@dataclass(frozen=True)
class Finished:
    """A task's record (fetched, saved or failed)."""

    task_id: int
    record: Record


@dataclass(frozen=True)
class Dropped:
    """A task a worker did not start because the run was stopping."""

    task_id: int


@dataclass(frozen=True)
class Lost:
    """Tasks a worker process held when it died; a new worker has taken its place."""

    task_ids: tuple[int, ...]


@dataclass(frozen=True)
class Returned:
    """Tasks a worker process gave back without starting them (the pool asked it to, for a
    worker whose threads idle), their room free: the run queues them again."""

    task_ids: tuple[int, ...]


@dataclass(frozen=True)
class Failed:
    """The pool cannot go on (a worker process cannot be started, or imports the user's
    script again): the run ends with `error`."""

    error: Exception


PoolEvent = Finished | Dropped | Lost | Returned | Failed


Posted = TypeVar("Posted", contravariant=True)


class Poster(Protocol[Posted]):
    """How a pool (or the run's reader) hands the run an event. The run looks at its events
    when it has reason to (it sleeps meanwhile rather than wake for each): `wake=True` gives
    it one, e.g. a pool whose waiting tasks run low, the last event of a batch, or an event
    that ends a task early (a stop, a dead worker)."""

    def __call__(self, event: Posted, *, wake: bool = False) -> None: ...


Post = Poster[PoolEvent]  # what a pool posts with


class Pool(Protocol):
    """Where tasks run. Made with (settings, post, gate, stopped); see the module's text."""

    capacity: int  # tasks it holds at most, running or waiting

    @property
    def free(self) -> int:
        """Room for this many more tasks."""

    def submit(self, tasks: Sequence[Task]) -> None:
        """Take `tasks` (no more than `free`); each gets one event back."""

    def done(self, task_id: int) -> None:
        """The run has settled this task: its room is free again."""

    def rebalance(self) -> None:
        """The run has no task ready for the room the pool has: if tasks wait in one worker
        while another idles, have them moved (they come back as `Returned`)."""

    def close(self, wait: bool) -> None:
        """Stop the workers; with `wait`, let them finish what they hold."""


class PoolFactory(Protocol):
    def __call__(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> Pool: ...


def waiting(settings: Settings) -> int:
    """Tasks a pool of --threads threads holds waiting beside its running ones."""
    return max(settings.threads, BATCH)


class StopFlag:
    """The stop flag of a run whose workers are threads (here or on a cluster's workers):
    a plain attribute, as `RawValue("b")` has, that needs no shared memory. The run alone
    sets it; the GIL makes each read and write one step."""

    def __init__(self) -> None:
        self.value = 0


def shared_stop_flag() -> Any:
    """A byte every worker, in any process of this machine, reads before it starts a task:
    1 once stopping (in shared memory: /dev/shm)."""
    return CONTEXT.RawValue("b", 0)


SHM_UNUSABLE = (
    "--processes needs /dev/shm (shared memory and semaphores between processes), and it is"
    " not writable here ({reason}); a run of threads does not need it: -p 0, or no -p"
)


def require_shared_memory(workers: int = 1, threads: int = 1) -> None:
    """What worker processes need of this machine, tried before the run starts: a
    semaphore and a block of shared memory, which multiprocessing makes in /dev/shm (a
    container may mount it read-only, or too small), then all the run will make there (the
    host gate's semaphores and tables, each of `workers` workers' queue and table of
    `threads` tasks: a /dev/shm with room for one semaphore may have none for those), made
    and dropped at once. UsageError (exit 2) if they cannot be made."""
    quiet_resource_tracker()  # before the semaphore starts it
    try:
        CONTEXT.Lock()
        CONTEXT.RawValue("b", 0)
        made: list[object] = [HostGate(CONTEXT, 0.0)]
        for _ in range(workers):
            made += [CONTEXT.Queue(), CONTEXT.RawArray("q", threads)]
        del made
    except OSError as exc:
        raise UsageError(SHM_UNUSABLE.format(reason=exc.strerror or exc)) from None


def unexpected(value: NoReturn) -> NoReturn:
    """The `case _` of a match that handles every kind: mypy proves it unreachable."""
    raise AssertionError(f"unexpected {type(value).__name__}: {value!r}")


def refuse_reimport() -> None:
    """In a worker process that is starting up, a run means the user's script, which the
    worker imports again (spawned or forked from the forkserver, a worker imports it as it
    starts), starts one when imported: leave at once with
    REIMPORTED, which the parent's pool reports as a usage error (a `__main__` guard is
    missing), rather than die with a traceback."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        os._exit(REIMPORTED)


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its standard error on /dev/null.

    Worker processes share it; when one dies holding semaphores it made, the tracker
    removes them, as it should, and warns about them on standard error, which cron mails
    as a failure although nothing is wrong.
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
