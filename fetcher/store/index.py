"""The index: the out dir's SQLite table of every URL's latest record, written by group commit."""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime, timezone
from pathlib import Path

from fetcher import sql
from fetcher.batching import Batcher
from fetcher.errors import UsageError
from fetcher.records import CAPTURE_COLUMNS, CONFIRMED, COPY_FIELDS, Capture, Copy, Known, Record

_CORRUPT = re.compile(r"not a database|malformed|corrupt", re.IGNORECASE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY,     -- as given, credentials replaced by ***
    outcome TEXT NOT NULL,    -- of the latest run that reached this URL
    final_url TEXT, status INTEGER, attempts INTEGER, elapsed REAL, error TEXT, note TEXT,
    changed INTEGER,          -- 1/0 vs the copy before; NULL on a first fetch
    -- the saved copy (records.Copy, same names), kept when a later attempt fails:
    path TEXT, bytes INTEGER, sha256 TEXT, content_type TEXT, encoding TEXT,
    etag TEXT, last_modified TEXT,
    date TEXT, age TEXT, cache_control TEXT, expires TEXT, requested_at REAL, responded_at REAL,
    fetched_at TEXT,          -- UTC, ISO 8601: when the saved copy was last fetched or confirmed
    prev_sha256 TEXT,         -- the copy's digest before the latest change
    -- the WARC record holding the latest payload (records.Capture), for --warc's revisits:
    warc_id TEXT, warc_uri TEXT, warc_date TEXT, warc_digest TEXT
) WITHOUT ROWID;
"""
_ADDED = (  # columns added since the first schema, with their types: (name, type)
    ("date", "TEXT"), ("age", "TEXT"), ("cache_control", "TEXT"), ("expires", "TEXT"),
    ("requested_at", "REAL"), ("responded_at", "REAL"),
    ("warc_id", "TEXT"), ("warc_uri", "TEXT"), ("warc_date", "TEXT"), ("warc_digest", "TEXT"),
)  # fmt: skip
_RESULT = ("outcome", "final_url", "status", "attempts", "elapsed", "error", "note", "changed")
Row = tuple[tuple[str, str], list[object]]  # a record for the index: its statement, its values


class Index:
    """The out dir's record of every URL; one writer thread in the run's main process.

    `put` gathers records and `flush` hands them to the writer thread in one go (the run
    flushes each time its loop has taken what came in, before it sleeps); the writer commits
    whatever has gathered while its previous commit ran (group commit). A record reaches disk
    within moments of arriving, a busy run pays one commit and one wake-up of the writer per
    batch, and the main loop never waits on SQLite (each SQLite call gives up the GIL and must
    win it back from the worker threads).
    """

    MAX_BATCH = 64  # flushes in one commit at most

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = self._connect()
            (verdict,) = self.db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            if not _CORRUPT.search(str(exc)):
                raise  # not damage (e.g. it cannot be opened): the caller says so
            raise self.unreadable(exc) from None
        if verdict != "ok":
            raise self.damaged(verdict)
        self.db.executescript(_SCHEMA)
        self._migrate()
        # a run's lookups are of what earlier runs left: an index that held nothing when
        # opened (a first run) is not asked, which spares the reader a query per URL
        self.empty = self.db.execute("SELECT 1 FROM pages LIMIT 1").fetchone() is None
        self.error: str | None = None
        self.writer_db = self._connect()
        self.pending: list[Row] = []  # put, not yet flushed
        self.writer: Batcher[list[Row]] = Batcher(
            self._commit, name="fetcher-index", limit=self.MAX_BATCH
        )

    def _migrate(self) -> None:
        """Add the columns an index made by an earlier fetcher lacks (freshness's, RFC 9111;
        --warc's captures): its rows read as saved without them, and are asked about on the
        next --refresh."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(pages)")}
        for name, kind in _ADDED:
            if name not in have:
                self.db.execute(f"ALTER TABLE pages ADD COLUMN {name} {kind}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def get(self, urls: Sequence[str]) -> list[Known | None]:
        """What the index held for each of `urls` when the run last committed (not records
        still queued), in few queries (`sql.select_in`); all None at once if it held nothing
        when opened: the run's own records are not looked up (with dedupe a URL has one
        entry; with --no-dedupe a repeat is fetched again).

        Call it from one thread at a time (the run's reader thread does).
        """
        if self.empty:
            return [None] * len(urls)
        found: dict[str, Known] = {}
        wanted = ", ".join((*COPY_FIELDS, *CAPTURE_COLUMNS))
        query = f"SELECT url, outcome, {wanted} FROM pages WHERE url IN ({{}})"
        width = len(COPY_FIELDS)
        try:
            for url, outcome, path, *rest in sql.select_in(self.db, query, urls):
                copy = Copy(path, *rest[: width - 1]) if path is not None else None
                capture = rest[width - 1 :]
                found[url] = Known(outcome, copy, Capture(*capture) if capture[0] else None)
        except sqlite3.DatabaseError as exc:
            raise self.unreadable(exc) from None
        return [found.get(url) for url in urls]

    def unreadable(self, exc: sqlite3.DatabaseError) -> UsageError:
        """Damage (with the way out) only when SQLite says so: a locked or vanished index
        must not be moved aside."""
        if _CORRUPT.search(str(exc)):
            return self.damaged(str(exc))
        return UsageError(f"cannot read the index {self.path}: {exc}")

    def damaged(self, detail: str) -> UsageError:
        """The error for an index SQLite cannot read, with the way out."""
        aside = self.path.with_name(self.path.name + ".damaged")
        detail = " ".join(detail.replace("*** in database main ***", "").split())
        return UsageError(
            f"the index {self.path} is damaged ({detail[:100]}): move it aside"
            f" (mv {self.path} {aside}) and run again; saved pages stay, and --resume"
            " fetches again what the new index does not list"
        )

    def put(self, record: Record) -> None:
        """Store the latest record (at the next flush); a failure keeps what is known of the
        saved copy."""
        self._raise_if_failed()
        if record.outcome == "skipped":
            return
        statement, columns = _upsert(record.outcome, record.capture is not None)
        values = {name: getattr(record, name) for name in ("url", *_RESULT)}
        copy = record.copy
        values.update({name: getattr(copy, name) if copy else None for name in COPY_FIELDS})
        if record.capture is not None:
            values.update(zip(CAPTURE_COLUMNS, astuple(record.capture), strict=True))
        values["fetched_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.pending.append((statement, [values[c] for c in columns]))

    def flush(self) -> None:
        """Hand what was put since the last flush to the writer thread."""
        if self.pending:
            self.writer.post(self.pending)
            self.pending = []

    def close(self) -> None:
        """Commit everything put so far, then close."""
        self.flush()
        self.writer.close()
        self.writer_db.close()
        self.db.close()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error:
            raise UsageError(f"cannot write the index {self.path}: {self.error}")

    def _commit(self, flushes: list[list[Row]]) -> None:
        """One transaction for what was flushed (in the writer thread), a statement for
        each run of records alike (`sql.insert`)."""
        if self.error:
            return
        db = self.writer_db
        batch = itertools.chain.from_iterable(flushes)
        try:
            db.execute("BEGIN")
            for (head, tail), rows in itertools.groupby(batch, key=lambda item: item[0]):
                sql.insert(db, head, [row for _, row in rows], tail)
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, read-only file system, ...
            self.error = str(exc)
            if db.in_transaction:
                db.execute("ROLLBACK")


@functools.cache
def _upsert(outcome: str, captured: bool = False) -> tuple[tuple[str, str], list[str]]:
    """The statement that stores records with this outcome (before and after its VALUES),
    and the columns it takes; a record without a WARC capture keeps the one known."""
    columns = ["url", *_RESULT]
    if outcome in CONFIRMED:
        columns += [*COPY_FIELDS, "fetched_at"]
    if captured:
        columns += CAPTURE_COLUMNS
    updates = [f"{c} = excluded.{c}" for c in columns[1:]]
    if outcome == "fetched":
        updates.append(
            "prev_sha256 = CASE WHEN pages.sha256 IS NOT excluded.sha256 "
            "THEN pages.sha256 ELSE pages.prev_sha256 END"
        )
    head = f"INSERT INTO pages ({', '.join(columns)})"
    return (head, f"ON CONFLICT(url) DO UPDATE SET {', '.join(updates)}"), columns
