"""One task → one record and the bytes to save: fetch, convert text to UTF-8. No disk.

Runs in a worker thread, a worker process or on a Dask worker; saving is the caller's
(`store.save_page`), so a Dask worker needs neither the store nor the out dir.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Any

from fetcher import capture
from fetcher.capture import Exchange
from fetcher.charset import is_text, to_utf8
from fetcher.errors import FetchError
from fetcher.http import Page, Validators, get_source
from fetcher.paths import path_for
from fetcher.politeness import HostGate
from fetcher.records import Capture, Copy, Record, failed
from fetcher.robots import Robots
from fetcher.session import thread_session
from fetcher.settings import Settings
from fetcher.urls import redact


@dataclass(frozen=True)
class Task:
    """A URL to fetch, with what the index knows of it; picklable for worker processes."""

    id: int
    url: str  # to fetch, credentials and all
    name: str  # the URL as written everywhere (records, index, file name): credentials masked
    host: str = ""  # the politeness key (fetcher.politeness.host_of)
    saved: Copy | None = None  # the copy an earlier run saved
    validators: Validators | None = None  # sent with --refresh
    lost: int = 0  # runs lost with a worker process that died; counted in `attempts`
    key: str = ""  # the URL's canonical form (urls.canonical) if known: it names the file
    capture: Capture | None = None  # the WARC capture an earlier run wrote (--warc)


def fetch_task(
    task: Task,
    settings: Settings,
    gate: HostGate | None = None,
    robots: Robots | None = None,
    exchanges: list[Exchange] | None = None,
) -> tuple[Record, bytes | None]:
    """Fetch and convert one URL: its record, and the bytes to save at `record.path` (None
    when there is nothing to save); with `robots` (--robots), not if its robots.txt forbids
    it. Never raises. Every HTTP exchange is added, as it went over the wire, to `exchanges`
    if given (--warc)."""
    with capture.recording(exchanges is not None) as tape:
        record, data = _fetch_task(task, settings, gate, robots)
    if tape is not None and exchanges is not None:
        exchanges += tape.exchanges
    return record, data


def _fetch_task(
    task: Task, settings: Settings, gate: HostGate | None, robots: Robots | None
) -> tuple[Record, bytes | None]:
    started = time.monotonic()
    data = None
    try:
        refusal = robots.refusal(task.url) if robots else None
        if refusal is not None:
            return _disallowed(task, refusal, time.monotonic() - started), None
        session = thread_session(settings)
        page = get_source(
            task.url, settings, session, task.validators, gate=gate, host=task.host or None
        )
        if page.body is None:
            record = _not_modified(task, page)
        else:
            record, data = _fetched(task, page, settings)
    except FetchError as exc:
        record = failed(task.name, exc.message, status=exc.status, attempts=exc.attempts)
    except Exception as exc:  # a bug must cost one URL, not the run
        record = crashed(task.name, exc)
    record.elapsed = time.monotonic() - started
    record.attempts += task.lost
    return record, data


def _disallowed(task: Task, refusal: str, elapsed: float) -> Record:
    """A URL robots.txt forbids: not requested, and no failure of the run."""
    return Record(url=task.name, outcome="disallowed", elapsed=elapsed, note=refusal)


def crashed(name: str, exc: BaseException) -> Record:
    """The record of a URL whose handling hit a bug: one line, and the run goes on."""
    return failed(name, f"internal error: {type(exc).__name__}: {exc}", reason="internal error")


def _fetched(task: Task, page: Page, settings: Settings) -> tuple[Record, bytes]:
    content_type = page.headers.get("Content-Type")
    data, encoding, note = _converted(page, content_type, settings.raw)
    digest = hashlib.sha256(data).hexdigest()
    copy = Copy(
        # from the URL itself: masking is lossy
        path=path_for(task.url, content_type, identity=task.key),
        bytes=len(data),
        sha256=digest,
        content_type=content_type,
        encoding=encoding,
        etag=page.headers.get("ETag"),
        last_modified=page.headers.get("Last-Modified"),
        **_freshness(page),
    )
    previous = task.saved.sha256 if task.saved else None
    record = Record(
        url=task.name,
        outcome="fetched",
        final_url=redact(page.final_url),  # the server's URL: it may carry credentials too
        status=page.status,
        copy=copy,
        attempts=page.attempts,
        changed=None if previous is None else digest != previous,
        note=note,
    )
    return record, data


def _converted(
    page: Page, content_type: str | None, raw: bool
) -> tuple[bytes, str | None, str | None]:
    """Text becomes UTF-8 (returning the charset it was decoded from); anything else stays
    bytes. An undeclared charset is guessed with the final URL's top-level domain as a hint."""
    body = page.body or b""
    if raw or not is_text(content_type, body):
        return body, None, None
    converted = to_utf8(body, content_type, page.final_url)
    return converted.data, converted.encoding, converted.note


def _freshness(page: Page, saved: Copy | None = None) -> dict[str, Any]:
    """What freshness needs of a response (RFC 9111 §4.2). A 304 freshens the saved copy
    (§4.3.4): its Date and Age are the 304's own, its Cache-Control and Expires replace the
    saved ones where it sends them."""
    headers = page.headers
    return {
        "date": headers.get("Date"),
        "age": headers.get("Age"),
        "cache_control": headers.get("Cache-Control") or (saved and saved.cache_control),
        "expires": headers.get("Expires") or (saved and saved.expires),
        "requested_at": page.requested_at or None,
        "responded_at": page.responded_at or None,
    }


def _not_modified(task: Task, page: Page) -> Record:
    """A 304: the saved copy stands, with whatever new validators the server sent."""
    copy = task.saved
    if copy is not None:
        copy = replace(
            copy,
            etag=page.headers.get("ETag") or copy.etag,
            last_modified=page.headers.get("Last-Modified") or copy.last_modified,
            **_freshness(page, copy),
        )
    return Record(
        url=task.name,
        outcome="not_modified",
        final_url=redact(page.final_url),
        status=page.status,
        copy=copy,
        attempts=page.attempts,
        changed=False,
    )
