"""The pools a run's tasks go to, one module per backend, each imported only when used.

`threads` (this process), `processes` (worker processes each running threads), `dask` (a
Dask cluster; needs the `dask` extra). Each is described here by a `PoolKind`: what its
pools can do and what they ask of the caller, known without importing the backend's module
(a run of threads never imports multiprocessing's workers or Dask's code). The run, the API,
the CLI and the report ask the kind, never a backend's name, as requests asks the adapter
it mounted: a new backend is a module here, naming its class in `__pool__`, and its line in
KINDS (and its value in `Settings.backend`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, cast

from fetcher.errors import UsageError
from fetcher.politeness import HostGate
from fetcher.pools.base import (
    CONTEXT,
    Pool,
    PoolFactory,
    Post,
    StopFlag,
    quiet_resource_tracker,
    refuse_reimport,
    require_shared_memory,
    shared_stop_flag,
)
from fetcher.settings import Settings


@dataclass(frozen=True)
class Extra:
    """An optional dependency a backend needs: the module it imports, and how to install it."""

    module: str
    hint: str  # the one-line error when it is missing: what to pip install


@dataclass(frozen=True)
class PoolKind:
    """What a backend's pools can do and need; asked by the run, the API, the CLI, the report."""

    module: str  # fetcher.pools.<module>, imported when a pool is opened
    # the fetches run where this process's gate does not reach (another machine): records
    # and page bytes come back here to be saved, and the dispatcher alone spaces a host
    remote: bool = False
    # workers in other processes here: the gate and the stop flag in shared memory (/dev/shm);
    # else plain locks and attributes, and a run needs no /dev/shm at all
    shared_gate: bool = False
    spawns: bool = False  # its workers import the caller's script again: it needs a __main__ guard
    extra: Extra | None = None  # what must be installed for it
    one_core: bool = False  # every fetch a thread of this process: the summary may suggest more

    def require(self, settings: Settings | None = None) -> None:
        """What the caller must allow, before the out dir is touched: UsageError (exit 2) with
        the pip command for a missing extra, or when shared memory cannot be made (a
        read-only /dev/shm); in a worker that imports a script again, leave."""
        if self.extra is not None and importlib.util.find_spec(self.extra.module) is None:
            raise UsageError(self.extra.hint)
        if self.spawns:
            refuse_reimport()
        if self.shared_gate:  # (all a run of `settings` will make there)
            given = settings or Settings()
            require_shared_memory(max(1, given.processes), given.threads)

    def new_gate(self, settings: Settings) -> HostGate:
        """The host gate the run's workers share: in shared memory only where they are
        processes of this machine (elsewhere, threads here or on a remote worker)."""
        if not self.shared_gate:
            return HostGate(None, settings.delay)
        quiet_resource_tracker()  # before the gate's semaphores start it
        return HostGate(CONTEXT, settings.delay)

    def new_stop_flag(self) -> Any:
        """The flag (`.value`, 1 once stopping) every worker reads before it starts a task:
        in shared memory only where the workers are processes of this machine."""
        return shared_stop_flag() if self.shared_gate else StopFlag()

    def open(self, settings: Settings, post: Post, gate: HostGate, stopped: Any) -> Pool:
        """A pool of this kind, posting its events with `post`."""
        module = importlib.import_module(f"fetcher.pools.{self.module}")
        factory = cast(PoolFactory, module.__pool__)
        return factory(settings, post, gate, stopped)


DASK_HINT = "--dask needs distributed: pip install 'distributed>=2024.8' (the dask extra)"
KINDS: dict[str, PoolKind] = {
    "threads": PoolKind("threads", one_core=True),
    "processes": PoolKind("processes", shared_gate=True, spawns=True),
    "dask": PoolKind("dask", remote=True, extra=Extra("distributed", DASK_HINT)),
}


def pool_kind(settings: Settings) -> PoolKind:
    """The kind of pool `settings` chose (`Settings.backend`)."""
    return KINDS[settings.backend]
