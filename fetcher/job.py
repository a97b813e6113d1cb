"""One task → one record: fetch, convert text to UTF-8, save. Runs in a worker thread or process."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from fetcher.charset import decode, is_text
from fetcher.errors import FetchError
from fetcher.fetch import Page, Validators, get_source, thread_session
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


def run_task(task: Task, settings: Settings, gate: HostGate | None = None) -> Record:
    """Never raises: whatever goes wrong becomes this URL's `failed` record."""
    started = time.monotonic()
    try:
        session = thread_session(settings)
        page = get_source(task.url, settings, session, task.validators, gate=gate)
        record = _not_modified(task, page) if page.body is None else _save(task, page, settings)
    except FetchError as exc:
        record = failed(task.url, exc.message, status=exc.status, attempts=exc.attempts)
    except OSError as exc:
        record = failed(task.url, f"cannot save the page: {exc.strerror or exc}", attempts=1)
    except Exception as exc:  # a bug must cost one URL, not the run
        record = failed(
            task.url, f"internal error: {type(exc).__name__}: {exc}", reason="internal error"
        )
    record.elapsed = time.monotonic() - started
    return record


def _save(task: Task, page: Page, settings: Settings) -> Record:
    content_type = page.headers.get("Content-Type")
    data, encoding, note = _converted(page.body or b"", content_type, settings.raw)
    relpath = path_for(task.url)
    save(settings.out, relpath, data)
    digest = hashlib.sha256(data).hexdigest()
    previous = task.known.sha256 if task.known else None
    return Record(
        url=redact(task.url),
        outcome="fetched",
        final_url=redact(page.final_url),
        status=page.status,
        path=relpath,
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


def _converted(
    body: bytes, content_type: str | None, raw: bool
) -> tuple[bytes, str | None, str | None]:
    """Text becomes UTF-8 (returning the charset it was decoded from); anything else stays bytes."""
    if raw or not is_text(content_type, body):
        return body, None, None
    decoded = decode(body, content_type)
    return decoded.text.encode("utf-8", "replace"), decoded.encoding, decoded.note


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
