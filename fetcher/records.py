"""The one record per input URL that `--jsonl`, the index and the summary share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Outcome = Literal["fetched", "not_modified", "fresh", "skipped", "disallowed", "failed"]
OUTCOMES: tuple[Outcome, ...] = (
    "fetched", "not_modified", "fresh", "skipped", "disallowed", "failed",
)  # fmt: skip


SAVED: tuple[Outcome, ...] = ("fetched", "not_modified", "fresh")  # a copy is on disk
CONFIRMED: tuple[Outcome, ...] = ("fetched", "not_modified")  # by the server, in this run


@dataclass(frozen=True)
class Copy:
    """A page's saved copy: where it is and what it holds. The record of the run that saved
    or confirmed it and the index row (which keeps it across later failures) share it."""

    path: str
    bytes: int
    sha256: str
    content_type: str | None = None
    encoding: str | None = None
    etag: str | None = None  # validators for --refresh; not written in records
    last_modified: str | None = None
    # what freshness needs (fetcher.freshness, RFC 9111 §4.2), also not written in records:
    # the response's Date, Age, Cache-Control and Expires as sent, and when (seconds since
    # the epoch) the request went out and its answer came
    date: str | None = None
    age: str | None = None
    cache_control: str | None = None
    expires: str | None = None
    requested_at: float | None = None
    responded_at: float | None = None


COPY_FIELDS = tuple(f.name for f in fields(Copy))  # also the index's column names


@dataclass(frozen=True)
class Capture:
    """The WARC record that holds a URL's latest payload (--warc): what a later --refresh's
    revisit record points to, and the digest that tells an unchanged payload."""

    record_id: str  # WARC-Record-ID, <urn:uuid:...>
    uri: str  # WARC-Target-URI
    date: str  # WARC-Date
    digest: str  # WARC-Payload-Digest, sha1:BASE32


CAPTURE_COLUMNS = ("warc_id", "warc_uri", "warc_date", "warc_digest")  # in the index


@dataclass(frozen=True)
class Known:
    """What the index remembers of a URL: its latest outcome, and its saved copy if any."""

    outcome: Outcome
    copy: Copy | None
    capture: Capture | None = None


@dataclass
class Record:
    """What happened to one URL; `to_dict` gives the JSON record, keys in contract order."""

    url: str  # as given, credentials replaced by *** (so are all URLs below)
    outcome: Outcome
    final_url: str | None = None
    status: int | None = None
    copy: Copy | None = None  # the copy on disk after this run (fetched, not_modified, skipped)
    attempts: int = 0
    elapsed: float = 0.0
    error: str | None = None
    changed: bool | None = None  # vs the previous run's saved content; None on a first fetch
    note: str | None = None  # e.g. "3 bytes invalid in gbk replaced with U+FFFD"
    # Not written out: a short category of `error` the summary groups by.
    reason: str | None = field(default=None, repr=False)
    # Not written out: the WARC capture of this URL's payload after this run (--warc).
    capture: Capture | None = field(default=None, repr=False)

    @property
    def path(self) -> str | None:
        """Where the page is saved, relative to the out dir (None with --no-pages)."""
        return self.copy.path or None if self.copy else None

    @property
    def bytes(self) -> int | None:
        return self.copy.bytes if self.copy else None

    @property
    def sha256(self) -> str | None:
        return self.copy.sha256 if self.copy else None

    @property
    def content_type(self) -> str | None:
        return self.copy.content_type if self.copy else None

    @property
    def encoding(self) -> str | None:
        return self.copy.encoding if self.copy else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "outcome": self.outcome,
            "final_url": self.final_url,
            "status": self.status,
            "path": self.path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "encoding": self.encoding,
            "attempts": self.attempts,
            "elapsed": round(self.elapsed, 4),
            "error": self.error,
            "changed": self.changed,
            "note": self.note,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def failed(url: str, error: str, *, reason: str | None = None, **values: Any) -> Record:
    """A `failed` record for `url` (already redacted); `reason` defaults to the error text."""
    return Record(url=url, outcome="failed", error=error, reason=reason or error, **values)
