"""WARC files (--warc): each process's own, every record whole, a CDXJ index beside each.

A file is written under a temporary name, `PREFIX-<timestamp>-<serial>.warc.gz.open`, held
with an exclusive flock while its process writes; a URL's records are appended in one
write, under a lock, once built (outside it). Closing a file writes its CDXJ index
(`PREFIX-<timestamp>-<serial>.cdxj`, sorted, as pywb reads it) and gives the WARC its final
name. A file left open by a process that was killed (`kill -9`; its flock gone with it) is
taken up by the next run with the same prefix (`recover`): its complete records kept, a torn
last one cut off, indexed and named, and said so.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import mmap
import os
import re
import threading
import zlib
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fetcher._version import __version__
from fetcher.capture import Exchange
from fetcher.records import CONFIRMED, Capture, Record, failed
from fetcher.settings import Settings
from fetcher.store.warcrecords import Written, cdx_fields, cdx_line, url_records
from fetcher.urls import redact

OPEN = ".open"  # the suffix of a file still being written
READ = 256 * 1024  # bytes of a file taken up fed to the decompressor at a time
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW


class WarcFile:
    """One WARC file being written: `<name>.open` until closed, then `<name>`."""

    def __init__(self, prefix: str, info: dict[str, str]) -> None:
        self.path, self.fd = _create(prefix)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # while held, no other run takes it up
        self.size = 0
        self.lines: list[str] = []
        self.append([_warcinfo(self.path.name, info)])

    def append(self, records: Sequence[Written]) -> None:
        """The records in one write: a kill leaves either all of them or a torn tail."""
        offset = self.size
        for record in records:
            if record.cdx is not None:
                self.lines.append(cdx_line(record.cdx, offset, len(record.data), self.path.name))
            offset += len(record.data)
        _write_all(self.fd, b"".join(r.data for r in records))
        self.size = offset

    def close(self) -> None:
        """Index, then name the file: a WARC under its final name is complete."""
        try:
            os.fsync(self.fd)
            write_index(self.path, self.lines)
            os.replace(_open_name(self.path), self.path)
        finally:
            os.close(self.fd)


class Archive:
    """The WARC files of one process: its threads append each URL's records to the current
    file, which is closed and followed by a new one past --warc-max-size."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = str(settings.warc)
        self.max_size = settings.warc_max_size
        self.secrets = settings.warc_secrets
        self.info = warcinfo_fields(settings)
        self.lock = threading.Lock()
        self.file: WarcFile | None = None
        self.closed = False

    def write(self, exchanges: Sequence[Exchange], previous: Capture | None) -> Capture | None:
        """Write a URL's exchanges; the capture its payload now has (see url_records)."""
        records, capture = url_records(exchanges, previous, self.secrets)
        if not records:
            return capture
        size = sum(len(r.data) for r in records)
        with self.lock:
            if self.closed:  # (a thread the run abandoned, finishing after the end)
                return None
            if self.file is not None and self.file.size + size > self.max_size:
                self.file.close()
                self.file = None
            if self.file is None:
                self.file = WarcFile(self.prefix, self.info)
            self.file.append(records)
        return capture

    def add(
        self, record: Record, exchanges: Sequence[Exchange], previous: Capture | None
    ) -> Record:
        """Write a URL's exchanges; its record, carrying the capture for the index. A WARC
        that cannot be written fails the URL (its exchanges are not in the archive)."""
        try:
            capture = self.write(exchanges, previous)
            # (a URL robots.txt forbids leaves only robots.txt's exchange: no capture of it)
            record.capture = capture if record.outcome in CONFIRMED else None
        except OSError as exc:
            return failed(
                record.url,
                f"cannot write the WARC file: {exc.strerror or exc}",
                status=record.status,
                attempts=record.attempts,
                elapsed=record.elapsed,
            )
        return record

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.file is not None:
                self.file.close()
                self.file = None


def open_archive(settings: Settings) -> Archive | None:
    """This process's WARC files, with --warc."""
    return Archive(settings) if settings.warc is not None else None


def warcinfo_fields(settings: Settings) -> dict[str, str]:
    """What the warcinfo record says: software, format, and the run's settings without
    secrets (header values of credentials, cookies, a proxy's password)."""
    options = []
    for name, value in sorted(vars(settings).items()):
        if name == "headers":
            value = [(n, "***" if n.lower() in _SECRET else v) for n, v in value]
        elif name == "cookies":
            value = len(value)
        elif name == "proxy" and value:
            value = redact(value)
        options.append(f"{name}={value}")
    return {
        "software": f"fetcher/{__version__}",
        "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "fetcher-options": " ".join(options),
    }


_SECRET = ("authorization", "proxy-authorization", "cookie")


def _warcinfo(filename: str, info: dict[str, str]) -> Written:
    from fetcher.store.warcrecords import _builder, _gzipped

    return _gzipped(_builder.create_warcinfo_record(filename, info), indexed=False)


def _create(prefix: str) -> tuple[Path, int]:
    """A new file `<prefix>-<UTC timestamp>-<serial>.warc.gz`, open under its temporary name;
    the serial is the first free one (worker processes start in the same millisecond)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")[:17]
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    for serial in range(100_000):
        path = Path(f"{prefix}-{stamp}-{serial:05d}.warc.gz")
        if path.exists():
            continue
        with contextlib.suppress(FileExistsError):
            return path, os.open(_open_name(path), _NEW, 0o644)
    raise OSError(f"no free WARC file name for {prefix}-{stamp}")


def _open_name(path: Path) -> Path:
    return path.with_name(path.name + OPEN)


def index_name(path: Path) -> Path:
    """`x.warc.gz` → `x.cdxj`."""
    return path.with_name(path.name.removesuffix(".warc.gz") + ".cdxj")


def write_index(path: Path, lines: list[str]) -> None:
    """The CDXJ index of the WARC file `path`, sorted, appearing whole."""
    target = index_name(path)
    temp = target.with_name(target.name + OPEN)
    temp.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")
    os.replace(temp, target)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def recover(prefix: str) -> list[str]:
    """Take up the files of `prefix` that a killed run left open: keep each one's complete
    records, cut a torn tail, index and name it. What was done, a line per file."""
    folder = Path(prefix).parent
    name = Path(prefix).name
    notes = []
    ours = re.compile(re.escape(name) + r"-[0-9]{17}-[0-9]{5}\.warc\.gz" + re.escape(OPEN))
    for left in sorted(folder.glob(f"{_glob_escape(name)}-*.warc.gz{OPEN}")):
        if not ours.fullmatch(left.name):
            continue  # another prefix's (this one followed by a dash and more)
        note = _recover_file(left)
        if note:
            notes.append(note)
    return notes


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _recover_file(left: Path) -> str | None:
    """Take up one file left open, unless a live process holds its lock."""
    try:
        fd = os.open(left, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live process writes it
        size = os.fstat(fd).st_size
        final = left.with_name(left.name.removesuffix(OPEN))
        members, lines = _read_whole(fd, size, final.name)
        kept = members[-1][1] if members else 0
        os.ftruncate(fd, kept)
        write_index(final, lines)
        os.replace(left, final)
    finally:
        os.close(fd)
    torn = f"; a torn last record of {size - kept} bytes cut off" if size > kept else ""
    return f"{final}: taken up from a run that was stopped, {len(members)} whole records{torn}"


def _read_whole(fd: int, size: int, filename: str) -> tuple[list[tuple[int, int]], list[str]]:
    """The file's whole members and their CDXJ lines, read through a map (a file of a
    gigabyte is not read into memory)."""
    if size == 0:
        return [], []
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as data:
        members = whole_members(data)
        return members, _index_lines(data, members, filename)


def whole_members(data: bytes | mmap.mmap) -> list[tuple[int, int]]:
    """(start, end) of each gzip member of `data` that is complete and holds a whole WARC
    record, up to the first that is not."""
    members: list[tuple[int, int]] = []
    start = 0
    with memoryview(data) as view:  # (released before a map is closed)
        while start < len(view):
            member = _member(view, start)
            if member is None or not _is_record(member[1]):
                break
            members.append((start, member[0]))
            start = member[0]
    return members


def _member(view: memoryview, start: int) -> tuple[int, bytes] | None:
    """Where the gzip member at `start` ends, and what it holds; None if it is cut short or
    not gzip. Fed in pieces: the rest of a large file is never copied per member."""
    unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
    plain, at = [], start
    try:
        while not unpacker.eof and at < len(view):
            piece = view[at : at + READ]
            plain.append(unpacker.decompress(piece))
            at += len(piece)
    except zlib.error:
        return None
    if not unpacker.eof:
        return None
    return at - len(unpacker.unused_data), b"".join(plain)


def _is_record(plain: bytes) -> bool:
    """Whether `plain` is one WARC record whose block is as long as it says."""
    head, sep, rest = plain.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"WARC/"):
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return value.strip().isdigit() and len(rest) == int(value) + 4
    return False


def _index_lines(
    data: bytes | mmap.mmap, members: list[tuple[int, int]], filename: str
) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator

    lines = []
    for start, end in members:
        for record in ArchiveIterator(io.BytesIO(data[start:end])):
            fields: dict[str, Any] | None = cdx_fields(record)
            if fields is not None:
                lines.append(cdx_line(fields, start, end - start, filename))
    return lines
