"""The out dir held for one run: its state folder, the run lock, the index opened in it."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from pathlib import Path

from fetcher.errors import OutDirBusy, UsageError
from fetcher.store.index import Index

STATE_DIR = ".fetcher"  # inside the out dir; starts with "." so no host folder can clash
INDEX_NAME = "index.sqlite3"
_SIDE = ("-wal", "-shm", "-journal")  # SQLite's own files beside the index
LOCK_NAME = "lock"


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
