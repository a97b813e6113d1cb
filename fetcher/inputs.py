"""URL lists: files and stdin, read lazily, with comments, dedupe and validation.

Entries come in batches: the lines of one read from a file or pipe (what it held at that
moment, so a pipe still streams), or a run of items of a Python list. Whatever a batch
needs from SQLite (dedupe here, the index lookup in the run's reader) is one query for the
batch, not one per URL: each SQLite call gives up the GIL and must win it back from busy
worker threads, which costs a reader thread far more than the query itself.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import os
import re
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import BinaryIO

from fetcher import sql
from fetcher.errors import UsageError
from fetcher.hints import url_meant
from fetcher.urls import (
    MAX_URL_LENGTH,
    canonical,
    check_url,
    is_url,
    redact,
    redact_excerpt,
    redact_line,
)

MAX_LINE = 4 * MAX_URL_LENGTH  # bytes: a longer line is passed over without being held
EXCERPT = 200  # bytes of a passed-over line kept for its record
READ_SIZE = 64 * 1024
FIRST_READ = 4 * 1024  # the first read is small: fetching starts before 64 KiB are parsed
ITEM_BATCH = 1024  # items of a Python list taken as one batch
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SKIPPED_START = re.compile(rb"\n(?=[\r\n#])")  # a blank or comment line begins here
STDIN = "-"


@dataclass(frozen=True)
class Entry:
    """One URL line: a URL to fetch, or (with `error`) a line that cannot be fetched.

    `name` is the URL with any credentials masked, made here once for everything downstream
    that writes the URL down: records, the index, file names. `key`, its canonical form
    (`urls.canonical`), is made here once too: dedupe and the file's name go by it.
    """

    url: str  # to fetch; a line in error is already masked, hard (`redact_line`)
    where: str  # "urls.txt line 3"
    error: str | None = None
    name: str = field(init=False)
    key: str = field(init=False)  # "" for a line in error

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", redact(self.url))
        object.__setattr__(self, "key", canonical(self.url) if self.error is None else "")

    @classmethod
    def bad(cls, text: str, where: str, error: str) -> Entry:
        """A line that cannot be fetched; `text` is shown as it is (masked by the caller)."""
        return cls(text, where, error)


def parse_line(line: str) -> str | None:
    """A trimmed URL, or None for a blank or comment line; ValueError says why a URL is bad."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    check_url(text)
    return text


@dataclass(frozen=True)
class Source:
    """What the command line names: a URL file (`-`: standard input), or a URL itself
    (`position`: which argument it was)."""

    name: str
    position: int = 0  # > 0 for a URL given as an argument

    @property
    def is_url(self) -> bool:
        return self.position > 0


def sources(arguments: Iterable[str], input_files: Iterable[str] = ()) -> list[Source]:
    """Arguments that are http(s) URLs are URLs, the others and every -i FILE are files;
    none at all means standard input."""
    found = [Source(a, n if is_url(a) else 0) for n, a in enumerate(arguments, start=1)]
    found += [Source(name) for name in input_files]
    return found or [Source(STDIN)]


Batch = list[Entry]


def read_entries(paths: Iterable[str | Source], *, dedupe: bool = True) -> Iterator[Entry]:
    """Entries of every source in order (a string is a file; `-` is this process's standard
    input), lazily."""
    batches = read_batches(paths, dedupe=dedupe, stdin=process_stdin())
    return itertools.chain.from_iterable(batches)


def read_batches(
    paths: Iterable[str | Source], *, dedupe: bool = True, stdin: BinaryIO | None
) -> Iterator[Batch]:
    """`read_entries` in batches, one per read, `-` being `stdin` (None: closed). Each file
    is opened when its turn comes: two named pipes filled one after the other must not wait
    on each other."""
    sources = _as_sources(paths)
    batches = (batch for source in sources for batch in _source_batches(source, stdin))
    return unique(batches) if dedupe else batches


def process_stdin() -> BinaryIO | None:
    """This process's standard input, unbuffered (see `_open`), or None when closed (<&-)."""
    if sys.stdin is None:
        return None
    stdin = sys.stdin.buffer
    return getattr(stdin, "raw", stdin)


def _as_sources(paths: Iterable[str | Source]) -> list[Source]:
    """A string is a file; no source at all is standard input."""
    return [p if isinstance(p, Source) else Source(p) for p in paths] or [Source(STDIN)]


def _source_batches(source: Source, stdin: BinaryIO | None) -> Iterator[Batch]:
    if source.is_url:  # a URL argument: a list of one, named by its position
        line = source.name.encode("utf-8", "surrogateescape")
        yield from _entries("argument", [[line]], source.position)
        return
    with _open(source.name, stdin) as stream:
        yield from _entries(_label(source.name), _lines(stream))


def reads_stdin(given: Iterable[Source]) -> bool:
    """Whether the run reads URLs from standard input (to be told, on a terminal, how to)."""
    return any(s.name == STDIN and not s.is_url for s in given)


def expected_count(
    given: Iterable[Source], counted: Callable[[int], None] = lambda n: None
) -> int | None:
    """About how many URLs the sources hold, counted without holding them (lines that are
    not blank or comments at their start), or None while any is not a regular file.
    `counted(n)` hears of each step's n as the count goes (a bar shows the count so far)."""
    total = 0
    for source in given:
        if source.is_url:
            total += 1
            continue
        try:
            if source.name == STDIN or not stat.S_ISREG(os.stat(source.name).st_mode):
                return None  # a pipe (a FIFO, /dev/stdin) is read once, by the run alone
            total += _count_lines(source.name, counted)
        except OSError:
            return None
    return total


class Expected:
    """About how many URLs the sources hold (`expected_count`), counted by a thread
    so the run starts at once; `count` is None until known, or for standard input;
    `so_far`, the count while it goes on."""

    def __init__(self, given: list[Source]) -> None:
        self.count: int | None = None
        self.so_far = 0
        threading.Thread(target=self._count, args=(given,), daemon=True).start()

    def _count(self, given: list[Source]) -> None:
        self.count = expected_count(given, self._counted)

    def _counted(self, count: int) -> None:
        self.so_far += count  # (this thread alone writes it)


def _count_lines(name: str, counted: Callable[[int], None]) -> int:
    """Lines that start with something other than a line end or `#`, counted in C: each
    line start is a newline (one is put before the first line) followed by such a byte."""
    count, last = 0, b"\n"
    with open(name, "rb") as stream:
        while chunk := stream.read(16 * READ_SIZE):
            text = last + chunk  # a start at the end of a chunk is judged with the next one
            step = text[:-1].count(b"\n") - len(_SKIPPED_START.findall(text))
            count += step
            counted(step)
            last = chunk[-1:]
    return count


def url_entries(urls: Iterable[str], *, dedupe: bool = True) -> Iterator[Entry]:
    """Entries of URLs given from Python (the library API); the n-th is "item n"."""
    return itertools.chain.from_iterable(url_batches(urls, dedupe=dedupe))


def url_batches(urls: Iterable[str], *, dedupe: bool = True) -> Iterator[Batch]:
    """`url_entries` in batches: a sequence (a list, a tuple) is all there, and is taken
    ITEM_BATCH items at a time; any other iterable an item at a time, as its next item may
    be slow to come (a generator reading a socket) and the ones before must not wait."""
    size = ITEM_BATCH if isinstance(urls, Sequence) else 1
    items = (url.encode("utf-8", "surrogateescape") for url in urls)
    lines = iter(lambda: list(itertools.islice(items, size)), [])
    batches = _entries("item", lines)
    return unique(batches) if dedupe else batches


def unique(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Drop a URL seen before, in any spelling (`urls.canonical`); bad lines all pass, each
    gets its own record."""
    seen = SeenSet()
    try:
        for batch in batches:
            new = iter(seen.add([entry.key for entry in batch if entry.error is None]))
            if kept := [entry for entry in batch if entry.error is not None or next(new)]:
                yield kept
    finally:
        seen.close()


class SeenSet:
    """The URLs met so far, kept on disk so that memory stays flat however long the list.

    In memory, even as 16-byte digests, a set costs about 105 bytes a URL: a gigabyte for a
    list of ten million. Here they live in a private SQLite temporary database (deleted when
    closed) with a small page cache, inside one transaction that is never committed.
    """

    CACHE_KIB = 4096

    def __init__(self) -> None:
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in (f"cache_size=-{self.CACHE_KIB}", "journal_mode=OFF", "synchronous=OFF"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self.db.execute("BEGIN")

    def add(self, urls: Sequence[str]) -> list[bool]:
        """Remember `urls`; for each, False if it was met before (earlier in `urls` too)."""
        digests = [_digest(url) for url in urls]
        met = self._met(digests)
        fresh, new = [], []
        for digest in digests:
            fresh.append(digest not in met)
            if fresh[-1]:
                met.add(digest)
                new.append((digest,))
        sql.insert(self.db, "INSERT INTO seen", new)
        return fresh

    def _met(self, digests: list[bytes]) -> set[bytes]:
        query = "SELECT digest FROM seen WHERE digest IN ({})"
        return {row[0] for row in sql.select_in(self.db, query, digests)}

    def close(self) -> None:
        self.db.close()


def _digest(url: str) -> bytes:
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def open_check(paths: Iterable[str | Source], stdin: BinaryIO | None) -> None:
    """Fail now (UsageError) if any URL file (or `stdin`, for `-`) cannot be read, before a
    run starts."""
    for source in _as_sources(paths):
        if source.is_url:
            continue
        if source.name != STDIN and _is_pipe(source.name):  # opened once, by the run alone:
            if not os.access(source.name, os.R_OK):  # a reader that comes and goes would
                raise _unreadable(source.name, "Permission denied")  # cost its writer
            continue
        with _open(source.name, stdin):
            pass


def _is_pipe(name: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(name).st_mode)
    except OSError:
        return False  # opening it says why


class Clipped(bytes):
    """The start of a line longer than MAX_LINE, which was read past rather than held."""

    length: int


def _open(name: str, stdin: BinaryIO | None) -> AbstractContextManager[BinaryIO]:
    """The list unbuffered: our own reads hold no lock of a buffered stream, so a signal
    while the reader waits on an idle stdin can end the process cleanly (Python aborts at
    exit when a daemon thread holds a standard stream's buffer lock)."""
    if name == STDIN:
        if stdin is None:  # started with standard input closed (<&-)
            raise UsageError("standard input is closed: give URL files, or pipe URLs in")
        return nullcontext(stdin)  # stays open for whoever else reads
    try:
        return open(name, "rb", buffering=0)
    except OSError as exc:
        raise _unreadable(name, exc.strerror or str(exc)) from None


def _unreadable(name: str, why: str) -> UsageError:
    if _SCHEME.match(name):  # ftp://…: meant as a URL, perhaps
        why += "; only http and https URLs are fetched"
    elif not os.path.lexists(name) and (url := url_meant(name)):  # example.com
        why += f"; a URL needs its scheme: {url}"
    return UsageError(f"cannot read URL file {name}: {why}")


def _label(name: str) -> str:
    return "stdin line" if name == STDIN else f"{name} line"


def _entries(label: str, batches: Iterable[list[bytes]], start: int = 1) -> Iterator[Batch]:
    """Each batch of lines as a batch of entries (those that are not blank or comments),
    numbered on from `start` across batches."""
    number = start
    for lines in batches:
        batch: Batch = []
        for raw in lines:
            if (entry := _entry(raw, f"{label} {number}", first=number == 1)) is not None:
                batch.append(entry)
            number += 1
        if batch:
            yield batch


def _entry(raw: bytes, where: str, first: bool) -> Entry | None:
    if isinstance(raw, Clipped):
        excerpt = redact_excerpt(raw.decode("utf-8", "replace").lstrip("\ufeff").strip())
        reason = f"line is {raw.length} bytes long (the limit is {MAX_LINE})"
        return Entry.bad(excerpt + "…", where, reason)
    if first and raw.startswith(codecs.BOM_UTF8):  # lists saved by Notepad, Excel
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        url = parse_line(raw.decode("utf-8"))
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return Entry.bad(redact_line(text), where, "line is not valid UTF-8")
    except ValueError as exc:  # the reason may quote the line: both are redacted hard
        text, reason = raw.decode("utf-8").strip(), str(exc)
        return Entry.bad(redact_line(text), where, redact_line(reason))
    return None if url is None else Entry(url, where)


def _lines(stream: BinaryIO) -> Iterator[list[bytes]]:
    """The lines each read completes, as they arrive (a read returns what a pipe holds,
    without waiting to fill a buffer). A line longer than MAX_LINE bytes is read past, not
    held: it comes out as a Clipped excerpt, so one huge line costs neither memory nor the
    lines after it."""
    pending = b""  # the start of the current line (at most MAX_LINE bytes of it)
    length = 0  # the current line's length so far
    size = FIRST_READ
    while chunk := _read(stream, size):
        size = READ_SIZE
        *ends, rest = chunk.split(b"\n")
        if ends:
            lines = [_line(pending + ends[0] + b"\n", length + len(ends[0]))]
            lines += [_line(end + b"\n", len(end)) for end in ends[1:]]
            yield lines
            pending, length = b"", 0
        length += len(rest)
        if len(pending) < MAX_LINE:
            pending += rest[: MAX_LINE - len(pending) + 1]
    if length:
        yield [_line(pending, length)]


def _read(stream: BinaryIO, size: int) -> bytes:
    try:
        return stream.read(size)
    except OSError as exc:
        raise UsageError(f"cannot read URL list: {exc.strerror or exc}") from None


def _line(start: bytes, length: int) -> bytes:
    if length <= MAX_LINE:
        return start
    line = Clipped(start[:EXCERPT])
    line.length = length
    return line
