"""Pools say what they can do: nothing outside `fetcher/pools/` (and the backend choice in
settings) names a backend, every backend the settings can choose has a kind, and a run
imports only the backend it uses."""

from __future__ import annotations

import ast
import errno
import importlib
import os
import subprocess
import sys
import typing

import pytest

from fetcher.errors import UsageError
from fetcher.pools import KINDS, Extra, PoolKind, base, pool_kind
from fetcher.pools.base import StopFlag
from fetcher.settings import Backend, Settings
from tests.conftest import ROOT, cli_env

NAMES = set(typing.get_args(Backend))
CHOOSES = {ROOT / "fetcher" / "settings.py"}  # where the backend is chosen, by name


def outside_pools() -> list[tuple[str, ast.AST]]:
    """(module, node) for every node of every fetcher module outside fetcher/pools/."""
    found = []
    for path in sorted((ROOT / "fetcher").rglob("*.py")):
        if "pools" in path.relative_to(ROOT / "fetcher").parts or path in CHOOSES:
            continue
        name = str(path.relative_to(ROOT))
        found += [(name, node) for node in ast.walk(ast.parse(path.read_text()))]
    return found


def test_no_backend_is_named_outside_the_pools() -> None:
    named = [
        f"{module}:{node.lineno} {node.value!r}"
        for module, node in outside_pools()
        if isinstance(node, ast.Constant) and node.value in NAMES
    ]
    assert named == []


def test_no_backend_module_is_imported_outside_the_pools() -> None:
    backends = {f"fetcher.pools.{name}" for name in NAMES}
    imported = [
        f"{module}:{node.lineno}"
        for module, node in outside_pools()
        if (isinstance(node, ast.ImportFrom) and node.module in backends)
        or (isinstance(node, ast.Import) and {a.name for a in node.names} & backends)
    ]
    assert imported == []


def test_every_backend_the_settings_choose_has_a_kind_and_a_pool() -> None:
    assert set(KINDS) == NAMES
    for kind in KINDS.values():
        assert hasattr(importlib.import_module(f"fetcher.pools.{kind.module}"), "__pool__")
    assert pool_kind(Settings()) is KINDS[Settings().backend]


@pytest.mark.parametrize(
    ("settings", "remote", "shared_gate", "spawns", "one_core"),
    [
        (Settings(), False, False, False, True),
        (Settings(processes=2), False, True, True, False),
        (Settings(dask="local"), True, False, False, False),
    ],
)
def test_what_each_pool_says_it_can_do(settings, remote, shared_gate, spawns, one_core) -> None:
    kind = pool_kind(settings)
    assert (kind.remote, kind.shared_gate, kind.spawns, kind.one_core) == (
        remote,
        shared_gate,
        spawns,
        one_core,
    )


def test_a_missing_extra_is_bad_usage_with_its_hint() -> None:
    kind = PoolKind("threads", extra=Extra("fetcher_no_such_module", "pip install it"))
    with pytest.raises(UsageError, match=r"^pip install it$"):
        kind.require()
    PoolKind("threads", extra=Extra("sqlite3", "never said")).require()


def test_a_run_of_threads_imports_no_other_backend(tmp_path) -> None:
    """Start-up is benchmarked: the processes and Dask modules wait until they are used."""
    code = (
        "import sys\n"
        "from fetcher.cli import main\n"
        "try:\n"
        "    main(['-q', '-o', sys.argv[1], '-'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(*sorted(m for m in sys.modules if m.startswith('fetcher.pools')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert "fetcher.pools.threads" in loaded
    assert loaded.isdisjoint({"fetcher.pools.processes", "fetcher.pools.dask"}), loaded


def test_only_worker_processes_put_the_stop_flag_in_shared_memory() -> None:
    """A run of threads must work where /dev/shm is read-only (tests/test_shm.py)."""
    for settings in (Settings(), Settings(dask="local")):
        flag = pool_kind(settings).new_stop_flag()
        assert isinstance(flag, StopFlag) and flag.value == 0
    shared = pool_kind(Settings(processes=2)).new_stop_flag()
    assert not isinstance(shared, StopFlag) and shared.value == 0


def test_processes_without_shared_memory_are_bad_usage(monkeypatch) -> None:
    """Where unshare cannot make a read-only /dev/shm, tests/test_shm.py skips: the message
    is checked here too, with the semaphore's failure as multiprocessing raises it."""

    def read_only() -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/dev/shm/sem.mp-x")

    monkeypatch.setattr(base.CONTEXT, "Lock", read_only)
    with pytest.raises(UsageError) as caught:
        pool_kind(Settings(processes=2)).require()
    assert str(caught.value) == (
        "--processes needs /dev/shm (shared memory and semaphores between processes), and"
        " it is not writable here (Read-only file system); a run of threads does not need"
        " it: -p 0, or no -p"
    )
    pool_kind(Settings()).require()  # threads: never asked
