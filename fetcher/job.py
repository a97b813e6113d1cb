"""One task → one record: fetch, convert text to UTF-8, save. Runs in a worker thread or process."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from fetcher.charset import is_text, to_utf8
from fetcher.errors import FetchError
from fetcher.http import Page, Validators, get_source, thread_session
from fetcher.politeness import HostGate
from fetcher.records import Record, failed, redact
from fetcher.settings import Settings
from fetcher.store import Known, path_for, save


@dataclass(frozen=True)
class Task:
    """A URL to fetch, with what the index knows of it; picklable for worker processes."""

    id: int
    url: str
    host: str = ""  # the politeness key (fetcher.politeness.host_of)
    known: Known | None = None
    validators: Validators | None = None
    lost: int = 0  # runs lost with a worker process that died; counted in `attempts`


def run_task(task: Task, settings: Settings, gate: HostGate | None = None) -> Record:
    """Fetch, convert and save one URL. Never raises: whatever goes wrong fails the record."""
    started = time.monotonic()
    record, data = fetch_task(task, settings, gate)
    record = keep(record, data, settings.out)
    record.elapsed = time.monotonic() - started
    return record


def fetch_task(
    task: Task, settings: Settings, gate: HostGate | None = None
) -> tuple[Record, bytes | None]:
    """Fetch and convert one URL: its record, and the bytes to save at `record.path` (None
    when there is nothing to save). No disk. Never raises."""
    started = time.monotonic()
    data = None
    try:
        session = thread_session(settings)
        page = get_source(task.url, settings, session, task.validators, gate=gate)
        if page.body is None:
            record = _not_modified(task, page)
        else:
            record, data = _fetched(task, page, settings)
    except FetchError as exc:
        record = failed(task.url, exc.message, status=exc.status, attempts=exc.attempts)
    except Exception as exc:  # a bug must cost one URL, not the run
        record = crashed(task.url, exc)
    record.elapsed = time.monotonic() - started
    record.attempts += task.lost
    return record, data


def keep(record: Record, data: bytes | None, out: Path) -> Record:
    """Save `data` at the record's path (atomically); a page that cannot be saved fails."""
    if data is None or record.path is None:
        return record
    try:
        save(out, record.path, data)
    except OSError as exc:
        return failed(
            record.url,
            f"cannot save the page: {exc.strerror or exc}",
            status=record.status,
            attempts=record.attempts,
            elapsed=record.elapsed,
        )
    return record


def crashed(url: str, exc: BaseException) -> Record:
    """The record of a URL whose handling hit a bug: one line, and the run goes on."""
    return failed(url, f"internal error: {type(exc).__name__}: {exc}", reason="internal error")


def _fetched(task: Task, page: Page, settings: Settings) -> tuple[Record, bytes]:
    content_type = page.headers.get("Content-Type")
    data, encoding, note = _converted(page.body or b"", content_type, settings.raw)
    digest = hashlib.sha256(data).hexdigest()
    previous = task.known.sha256 if task.known else None
    record = Record(
        url=redact(task.url),
        outcome="fetched",
        final_url=redact(page.final_url),
        status=page.status,
        path=path_for(task.url),
        bytes=len(data),
        sha256=digest,
        content_type=content_type,
        encoding=encoding,
        attempts=page.attempts,
        changed=None if previous is None else digest != previous,
        note=note,
        etag=page.headers.get("ETag"),
        last_modified=page.headers.get("Last-Modified"),
    )
    return record, data


def _converted(
    body: bytes, content_type: str | None, raw: bool
) -> tuple[bytes, str | None, str | None]:
    """Text becomes UTF-8 (returning the charset it was decoded from); anything else stays bytes."""
    if raw or not is_text(content_type, body):
        return body, None, None
    converted = to_utf8(body, content_type)
    return converted.data, converted.encoding, converted.note


def _not_modified(task: Task, page: Page) -> Record:
    known = task.known
    return Record(
        url=redact(task.url),
        outcome="not_modified",
        final_url=redact(page.final_url),
        status=page.status,
        path=known.path if known else None,
        bytes=known.bytes if known else None,
        sha256=known.sha256 if known else None,
        content_type=known.content_type if known else None,
        encoding=known.encoding if known else None,
        attempts=page.attempts,
        changed=False,
        etag=page.headers.get("ETag") or (known.etag if known else None),
        last_modified=page.headers.get("Last-Modified") or (known.last_modified if known else None),
    )
