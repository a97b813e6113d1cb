"""The out dir: atomic page writes, the SQLite index of records, the run lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from fetcher import sql
from fetcher.batching import Batcher
from fetcher.errors import OutDirBusy, UsageError
from fetcher.records import COPY_FIELDS, SAVED, Copy, Known, Record, failed

STATE_DIR = ".fetcher"  # inside the out dir; starts with "." so no host folder can clash
INDEX_NAME = "index.sqlite3"
_SIDE = ("-wal", "-shm", "-journal")  # SQLite's own files beside the index
_CORRUPT = re.compile(r"not a database|malformed|corrupt", re.IGNORECASE)
LOCK_NAME = "lock"

_part_numbers = itertools.count()
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# a file with no name in a folder (Linux), named later through /proc/self/fd
_UNNAMED = (
    os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
    else None
)
_T = TypeVar("_T")


def save(out: Path, relpath: str, data: bytes) -> None:
    """Write `data` to out/relpath so that the file appears only complete.

    The bytes go into a file with no name yet (O_TMPFILE), which gets the page's name once
    whole: one directory operation, where a temporary name and a rename take two (on a disk,
    most of what fetcher's runs paid beyond its bare stack's), and a run killed meanwhile
    leaves nothing. A page whose file exists (a re-run), or a file system without O_TMPFILE,
    takes the classic way: a temporary name, then os.replace.

    Nothing inside the out dir is followed if it is a symbolic link, even one put there while
    the run goes on: the way down is opened folder by folder with O_NOFOLLOW, and the file is
    named and renamed relative to its folder's descriptor (a linked folder fails the page; a
    temporary name is created exclusively, never opened through a link).
    """
    *folders, name = relpath.split("/")
    folder = _open_folder(out, folders)
    try:
        if not _save_unnamed(folder, name, data):
            temp, fd = _temp_name(lambda t: os.open(t, _NEW_FILE, 0o644, dir_fd=folder))
            try:
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
            except BaseException:
                _unlink(temp, folder)
                raise
            _rename(temp, name, folder)
    finally:
        os.close(folder)


def _save_unnamed(folder: int, name: str, data: bytes) -> bool:
    """The O_TMPFILE way; False where the file system (or the OS) has none."""
    if _UNNAMED is None:
        return False
    try:
        fd = os.open(".", _UNNAMED, 0o644, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return False
        raise
    try:
        _write_all(fd, data)
        whole = f"/proc/self/fd/{fd}"  # linkat(2): how an unnamed file is given a name
        try:
            os.link(whole, name, dst_dir_fd=folder, follow_symlinks=True)
            return True
        except FileExistsError:  # the page is there already: replaced in one step, below
            pass
        except OSError:  # it cannot be named here (e.g. /proc/self/fd refuses): the classic way
            return False
        temp, _ = _temp_name(lambda t: os.link(whole, t, dst_dir_fd=folder, follow_symlinks=True))
        _rename(temp, name, folder)
    finally:
        os.close(fd)
    return True


def _temp_name(make: Callable[[str], _T]) -> tuple[str, _T]:
    """A fresh temporary name in a page's folder, and what `make` made under it."""
    for _ in range(100):  # a name taken (by a planted file or link) is passed over
        temp = f".part-{os.getpid()}-{threading.get_ident()}-{next(_part_numbers)}"
        try:
            return temp, make(temp)
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name in the page's folder")


def _rename(temp: str, name: str, folder: int) -> None:
    try:
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        _unlink(temp, folder)
        raise


def _unlink(temp: str, folder: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp, dir_fd=folder)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all is written: a file object would add an fstat, an ioctl and an
    lseek, each a system call that gives up the GIL and must win it back from the other
    worker threads."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def save_page(record: Record, data: bytes | None, out: Path) -> Record:
    """Save `data` as the record's copy; a page that cannot be saved fails. The time it
    takes is added to the record's `elapsed`."""
    if data is None or record.path is None:
        return record
    started = time.monotonic()
    try:
        save(out, record.path, data)
    except OSError as exc:
        record = failed(
            record.url,
            f"cannot save the page: {exc.strerror or exc}",
            status=record.status,
            attempts=record.attempts,
            elapsed=record.elapsed,
        )
    record.elapsed += time.monotonic() - started
    return record


def _open_folder(out: Path, names: list[str]) -> int:
    """A descriptor of out/names..., made where missing, refusing a link on the way."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # out: the user's own
    except FileNotFoundError:  # (a library caller may save before any run made it)
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, name in enumerate(names, start=1):
            try:
                child = os.open(name, _FOLDER, dir_fd=fd)
            except FileNotFoundError:  # the first page of its folder: make the folder
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
                child = os.open(name, _FOLDER, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = "/".join(names[:depth])
                message = f"{where} in the out dir is a symbolic link or a file (not followed)"
                raise OSError(exc.errno, message) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY,     -- as given, credentials replaced by ***
    outcome TEXT NOT NULL,    -- of the latest run that reached this URL
    final_url TEXT, status INTEGER, attempts INTEGER, elapsed REAL, error TEXT, note TEXT,
    changed INTEGER,          -- 1/0 vs the copy before; NULL on a first fetch
    -- the saved copy (records.Copy, same names), kept when a later attempt fails:
    path TEXT, bytes INTEGER, sha256 TEXT, content_type TEXT, encoding TEXT,
    etag TEXT, last_modified TEXT,
    fetched_at TEXT,          -- UTC, ISO 8601: when the saved copy was last fetched or confirmed
    prev_sha256 TEXT          -- the copy's digest before the latest change
) WITHOUT ROWID;
"""
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
        # a run's lookups are of what earlier runs left: an index that held nothing when
        # opened (a first run) is not asked, which spares the reader a query per URL
        self.empty = self.db.execute("SELECT 1 FROM pages LIMIT 1").fetchone() is None
        self.error: str | None = None
        self.writer_db = self._connect()
        self.pending: list[Row] = []  # put, not yet flushed
        self.writer: Batcher[list[Row]] = Batcher(
            self._commit, name="fetcher-index", limit=self.MAX_BATCH
        )

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
        query = f"SELECT url, outcome, {', '.join(COPY_FIELDS)} FROM pages WHERE url IN ({{}})"
        try:
            for url, outcome, path, *rest in sql.select_in(self.db, query, urls):
                found[url] = Known(outcome, Copy(path, *rest) if path is not None else None)
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
        statement, columns = _upsert(record.outcome)
        values = {name: getattr(record, name) for name in ("url", *_RESULT)}
        copy = record.copy
        values.update({name: getattr(copy, name) if copy else None for name in COPY_FIELDS})
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
def _upsert(outcome: str) -> tuple[tuple[str, str], list[str]]:
    """The statement that stores records with this outcome (before and after its VALUES),
    and the columns it takes."""
    columns = ["url", *_RESULT]
    if outcome in SAVED:
        columns += [*COPY_FIELDS, "fetched_at"]
    updates = [f"{c} = excluded.{c}" for c in columns[1:]]
    if outcome == "fetched":
        updates.append(
            "prev_sha256 = CASE WHEN pages.sha256 IS NOT excluded.sha256 "
            "THEN pages.sha256 ELSE pages.prev_sha256 END"
        )
    head = f"INSERT INTO pages ({', '.join(columns)})"
    return (head, f"ON CONFLICT(url) DO UPDATE SET {', '.join(updates)}"), columns


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP and exc.filename:  # O_NOFOLLOW met a link
        return f"{exc.filename} is a symbolic link (not followed)"
    return exc.strerror or str(exc)


class OutDir:
    """The out dir held for one run: created, locked (exit 75 for a second run), indexed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        state = out / STATE_DIR
        try:
            state.mkdir(parents=True, exist_ok=True)
            index = state / INDEX_NAME
            for path in (state, index, *(index.with_name(INDEX_NAME + x) for x in _SIDE)):
                if path.is_symlink():
                    raise OSError(errno.ELOOP, f"{path} is a symbolic link (not followed)")
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(state / LOCK_NAME, flags, 0o644)
            self._lock = open(fd, "r+")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise UsageError(f"cannot use out dir {out}: {_reason(exc)}") from None
        self._take_lock()
        try:
            self.index = Index(state / INDEX_NAME)
        except sqlite3.Error as exc:
            self._lock.close()
            raise UsageError(f"cannot open the index in {state}: {exc}") from None
        except UsageError:
            self._lock.close()
            raise

    def _take_lock(self) -> None:
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            pid = self._lock.read().strip()
            self._lock.close()
            raise OutDirBusy(str(self.out), int(pid) if pid.isdigit() else None) from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def close(self) -> None:
        self.index.close()
        self._lock.close()  # closing releases the flock

    def __enter__(self) -> OutDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
