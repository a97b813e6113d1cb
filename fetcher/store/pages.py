"""Page writes: a page appears under its final name only whole, never through a link.

`save` writes the bytes into a file with no name yet (O_TMPFILE) and names it when whole, or
the classic way (a temporary name, renamed); `save_page` turns a failure into the record's.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from fetcher.freshness import http_date
from fetcher.records import Record, failed
from fetcher.store.folders import Folders

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


def save(
    out: Path,
    relpath: str,
    data: bytes,
    mtime: float | None = None,
    folders: Folders | None = None,
) -> None:
    """Write `data` to out/relpath so that the file appears only complete, modified at
    `mtime` (seconds since the epoch) if given.

    The bytes go into a file with no name yet (O_TMPFILE), which gets the page's name once
    whole: one directory operation, where a temporary name and a rename take two (on a disk,
    most of what fetcher's runs paid beyond its bare stack's), and a run killed meanwhile
    leaves nothing. A page whose file exists (a re-run), or a file system without O_TMPFILE,
    takes the classic way: a temporary name, then os.replace.

    Nothing inside the out dir is followed if it is a symbolic link, even one put there while
    the run goes on: the way down is opened folder by folder with O_NOFOLLOW, and the file is
    named and renamed relative to its folder's descriptor (a linked folder fails the page; a
    temporary name is created exclusively, never opened through a link). A run's `folders`
    keep the descriptors of the folders it wrote to (fetcher.store.folders); a write that
    fails through a kept one is tried again through a fresh walk if that walk reaches
    another folder (the kept one was removed or moved); a failure in the folder itself
    (ENOSPC, EACCES) fails the page alone, and keeps the descriptor.
    """
    *names, name = relpath.split("/")
    key = tuple(names)
    if folders is not None and folders.out == out:
        folder, kept = folders.get(key, _open_folder)
    else:
        folder, kept = _open_folder(out, names), False
    try:
        _save_in(folder, name, data, mtime)
    except OSError:
        if not kept or folders is None:  # (kept: in `folders`)
            raise
        fresh = _open_folder(out, names)  # (a link standing there now fails the page)
        try:
            if _same_folder(folder, fresh):  # the kept one is still there: the failure is
                raise  # the page's own (ENOSPC, EACCES, ...), and the descriptor stays kept
            folders.forget(key, folder)  # gone or replaced: written through a fresh walk
            _save_in(fresh, name, data, mtime)
        finally:
            os.close(fresh)
    finally:
        if not kept:
            os.close(folder)


def _same_folder(one: int, other: int) -> bool:
    first, second = os.fstat(one), os.fstat(other)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _save_in(folder: int, name: str, data: bytes, mtime: float | None) -> None:
    """`save` once the page's folder is open."""
    if _save_unnamed(folder, name, data, mtime):
        return
    temp, fd = _temp_name(lambda t: os.open(t, _NEW_FILE, 0o644, dir_fd=folder))
    try:
        try:
            _write_all(fd, data, mtime)
        finally:
            os.close(fd)
    except BaseException:
        _unlink(temp, folder)
        raise
    _rename(temp, name, folder)


def _save_unnamed(folder: int, name: str, data: bytes, mtime: float | None) -> bool:
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
        _write_all(fd, data, mtime)
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


def _write_all(fd: int, data: bytes, mtime: float | None = None) -> None:
    """os.write until all is written: a file object would add an fstat, an ioctl and an
    lseek, each a system call that gives up the GIL and must win it back from the other
    worker threads. Then the mtime, before the file has its name: it appears with it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if mtime is not None:
        os.utime(fd, (time.time(), mtime))


def keep_page(
    record: Record,
    data: bytes | None,
    out: Path,
    pages: bool,
    folders: Folders | None = None,
) -> Record:
    """`save_page`, or with --no-pages (`pages` False) a record that names no file (its copy
    keeps the validators and digest the index needs for --refresh)."""
    if pages:
        return save_page(record, data, out, folders)
    if record.copy is not None:
        record.copy = replace(record.copy, path="")
    return record


def save_page(
    record: Record, data: bytes | None, out: Path, folders: Folders | None = None
) -> Record:
    """Save `data` as the record's copy; a page that cannot be saved fails. The time it
    takes is added to the record's `elapsed`."""
    if data is None or record.path is None:
        return record
    started = time.monotonic()
    try:
        mtime = modified_at(record.copy.last_modified) if record.copy else None
        save(out, record.path, data, mtime, folders)
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


def modified_at(last_modified: str | None, now: float | None = None) -> float | None:
    """A valid Last-Modified as seconds since the epoch, to be the saved file's mtime (wget
    -N): `ls -lt` and rsync then see the page's age. None if absent, unreadable, or later
    than now (RFC 9110 §8.8.2.1: a server must not send one; its clock is wrong)."""
    seconds = http_date(last_modified)
    if seconds is None:
        return None
    return seconds if seconds <= (time.time() if now is None else now) else None


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
