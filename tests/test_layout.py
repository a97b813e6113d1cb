"""The layout docs/design.md promises, checked: one-way imports, small modules,
every submodule reachable by name, and a Dask worker that imports only the fetch path."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fetcher
from tests.conftest import ROOT

PACKAGE = ROOT / "fetcher"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """fetcher modules `path` imports anywhere (in functions too), but for type checking."""
    tree = ast.parse(path.read_text())
    checking = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ]
    skipped = {id(n) for block in checking for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            for alias in node.names:  # `from fetcher import watchdog` imports a module
                full = f"{node.module}.{alias.name}"
                yield full if full in known else node.module


def test_no_import_cycle() -> None:
    known = modules()
    graph = {name: set(imports(path, known)) - {name} for name, path in known.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " → ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_module_imports_the_package_init() -> None:
    """The package's `__init__` is the entry for users: no module of it runs back up there
    (the version has a module of its own)."""
    known = modules()
    upward = {name for name, path in known.items() if "fetcher" in set(imports(path, known))}
    assert upward - {"fetcher"} == set()


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_submodule_is_reachable_as_a_module(monkeypatch) -> None:
    # importing fetcher.__main__ takes charge of Ctrl-C, as the command's first act: for
    # this process, only until the test ends
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    for info in pkgutil.walk_packages(fetcher.__path__, "fetcher."):
        module = importlib.import_module(info.name)
        reached = fetcher
        for part in info.name.split(".")[1:]:
            reached = getattr(reached, part)
        assert reached is module, f"fetcher.{info.name} is shadowed by {reached!r}"


def test_the_dask_extra_is_never_imported_statically() -> None:
    """The type check then reads the same code with the extra installed or not."""
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in ("dask", "distributed")], name


def test_a_dask_worker_imports_only_the_fetch_path() -> None:
    code = (
        "import sys, fetcher.pools.dask_worker\n"
        "print(*(m for m in sys.modules if m.startswith(('fetcher', 'typer', 'tqdm'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "fetcher.task" in loaded
    forbidden = {
        "fetcher.runner",
        "fetcher.store",
        "fetcher.cli",
        "fetcher.inputs",
        "typer",
        "tqdm",
    }
    assert loaded & forbidden == set()
