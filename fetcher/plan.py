"""What an entry needs, decided before any work: a record at once, or a task to fetch.

Pure but for one injectable look at the disk, so --resume and --refresh are tested by
table, without threads or servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fetcher import freshness
from fetcher.http import Validators
from fetcher.inputs import Entry
from fetcher.politeness import host_of
from fetcher.records import SAVED, Copy, Known, Record, failed
from fetcher.settings import Settings
from fetcher.task import Task


def plan(
    entry: Entry,
    known: Known | None,
    settings: Settings,
    task_id: int,
    *,
    exists: Callable[[Path], bool] = Path.is_file,
    now: Callable[[], float] = time.time,
) -> Task | Record:
    """A bad line's `failed` record; with --resume, a saved URL's `skipped` record; with
    --refresh, a still fresh page's `fresh` record; else the task (numbered `task_id`) that
    fetches it, with validators if --refresh can use them."""
    if entry.error is not None:
        return failed(entry.name, f"{entry.error} ({entry.where})", reason=entry.error)
    copy = known.copy if known else None
    if settings.resume and known and known.outcome in SAVED:
        return Record(url=entry.name, outcome="skipped", copy=copy)
    until = _fresh_until(copy, settings, exists, now)
    if until is not None:
        return Record(url=entry.name, outcome="fresh", copy=copy, note=freshness.note(until))
    return Task(
        task_id,
        entry.url,
        entry.name,
        host_of(entry.url),
        saved=copy,
        validators=_validators(copy, settings, exists),
        key=entry.key,
        capture=known.capture if known else None,
    )


def _fresh_until(
    copy: Copy | None, settings: Settings, exists: Callable[[Path], bool], now: Callable[[], float]
) -> float | None:
    """Until when --refresh may leave the saved copy unasked (RFC 9111), if it may now:
    never with --revalidate, nor for a copy no longer on disk."""
    if not settings.refresh or settings.revalidate or copy is None:
        return None
    until = freshness.fresh_until(copy, now())
    if until is None or not exists(Path(settings.out) / copy.path):
        return None
    return until


def _validators(
    copy: Copy | None, settings: Settings, exists: Callable[[Path], bool]
) -> Validators | None:
    """What --refresh sends: only for a copy that is still on disk (a 304 would otherwise
    leave nothing saved), and only if the server gave it validators."""
    if not settings.refresh or copy is None or not (copy.etag or copy.last_modified):
        return None
    if settings.pages and not exists(Path(settings.out) / copy.path):
        return None  # (with --no-pages, the WARC capture is what a 304 confirms)
    return Validators(copy.etag, copy.last_modified)
