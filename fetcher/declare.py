"""How a setting is declared, once: a `Settings` field names it, types it and gives its
default; its `setting(...)` metadata gives its command-line flags (spelling, help, group) and
says how a user's value becomes the typed value. The command line (`fetcher.options`), its
`--help` and the library's `fetcher.fetch` are derived from these declarations, as
gallery-dl's option table with `dest=` drives its parser and its config.

Plain data and functions only: this module travels to worker processes with `Settings`, so it
imports neither typer nor anything of fetcher's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")
INPUT, OUTPUT, CONCURRENCY, HTTP, RERUNS, OTHER = (
    "Input", "Output", "Concurrency", "HTTP", "Re-runs", "Other",
)  # fmt: skip
GROUPS = (INPUT, OUTPUT, CONCURRENCY, HTTP, RERUNS, OTHER)  # --help's sections, in order
SAME = object()  # a flag whose command-line default is its setting's
KEY = "fetcher"  # the key of a field's metadata


@dataclass(frozen=True)
class Flag:
    """One command-line option: spelling, help and group, how typer reads its text (`type`,
    `parser`, `typer`), and what the value read means for its setting (`means`; None: the
    option was not given, the setting keeps its default)."""

    names: tuple[str, ...]  # ("-t", "--threads"); a switch pair as "--dedupe/--no-dedupe"
    help: str
    group: str = OTHER
    metavar: str | None = None
    type: Any = None  # what typer reads; None: the setting's own type
    default: Any = SAME  # typer's default; SAME: the setting's default
    parser: Callable[[str], Any] | None = None  # one word of text → its value (ValueError)
    means: Callable[[Any], Any] | None = None  # the value read → the user's value, or None
    shown: Callable[[Any], str] | None = None  # the default as --help shows it
    typer: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def long(self) -> str:
        """The flag as messages name it: `--ca-bundle`."""
        return next(n for n in self.names if n.startswith("--")).split("/")[0]

    @property
    def dest(self) -> str:
        """The name the command's parameter gets: `ca_bundle`."""
        return self.long.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Declared:
    """A setting's declaration beside its field: its flags, how a user's value becomes the
    setting's (`convert`, ValueError saying why not), and whether `fetcher.fetch` takes it."""

    flags: tuple[Flag, ...] = ()
    convert: Callable[[Any], Any] | None = None
    api: bool = True


def setting(
    default: T,
    *flags: Flag,
    convert: Callable[[Any], Any] | None = None,
    api: bool = True,
    repr: bool = True,
) -> T:
    """A Settings field's default, with the rest of its declaration as metadata."""
    declared = Declared(flags, convert, api)
    made: T = field(default=default, repr=repr, metadata={KEY: declared})
    return made


def declarations(cls: type) -> Iterator[tuple[str, Any, Declared]]:
    """Each field of the dataclass `cls`: its name, default and declaration."""
    for each in dataclasses.fields(cls):
        yield each.name, each.default, each.metadata.get(KEY, Declared())


def user_value(declared: Declared, value: Any) -> Any:
    """A value given by a user (from Python, or read from the command line) as the setting's
    value; ValueError says why it cannot be."""
    return declared.convert(value) if declared.convert else value
