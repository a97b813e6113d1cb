"""The pools a run's tasks go to, one module per backend, each imported only when used.

`threads` (this process), `processes` (worker processes each running threads), `dask` (a
Dask cluster; needs the `dask` extra). Like gallery-dl's downloader registry, a backend's
module is found by name and names its class in `__pool__`.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from fetcher.politeness import HostGate
from fetcher.pools.base import CONTEXT, Pool, PoolFactory, Post
from fetcher.settings import Settings


def open_pool(settings: Settings, post: Post, gate: HostGate, stopped: Any) -> Pool:
    """The pool for `settings.backend`, posting its events with `post`."""
    module = importlib.import_module(f"fetcher.pools.{settings.backend}")
    factory = cast(PoolFactory, module.__pool__)
    return factory(settings, post, gate, stopped)


def new_gate(settings: Settings) -> HostGate:
    """The host gate the run's workers share: in shared memory only with --processes."""
    if settings.backend != "processes":
        return HostGate(None, settings.delay)  # threads only, here or on a Dask worker
    from fetcher.pools.processes import quiet_resource_tracker

    quiet_resource_tracker()  # before the gate's semaphores start it
    return HostGate(CONTEXT, settings.delay)
