"""The library API: fetch URLs from Python and get records back as they finish."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fetcher.inputs import Entry, url_entries
from fetcher.records import Record
from fetcher.runner import Run
from fetcher.settings import Settings
from fetcher.store import OutDir


def fetch(urls: Iterable[str], out: str | Path = "pages", **options: Any) -> Iterator[Record]:
    """Fetch `urls` into `out`, yielding a Record per URL as each finishes.

    `options` are Settings fields (threads=, processes=, retries=, timeout=, max_size=, ...).
    The out dir is locked while the iterator is open; close it (or exhaust it) to release.
    Raises OutDirBusy if another run holds `out`, UsageError if it cannot be used.
    """
    settings = Settings(out=Path(out), **options)
    with open_run(url_entries(urls, dedupe=settings.dedupe), settings) as run:
        yield from run


@contextmanager
def open_run(entries: Iterable[Entry], settings: Settings) -> Iterator[Run]:
    """A Run over `entries` with its out dir created, locked and indexed for its lifetime."""
    settings = replace(settings, out=Path(settings.out))
    with OutDir(settings.out) as outdir:
        yield Run(entries, settings, outdir.index)
