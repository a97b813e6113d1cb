"""The out dir's folders, each opened once per run: a page write then costs no folder walk.

`save` reaches a page's folder through descriptors, folder by folder with O_NOFOLLOW, so that
no link planted in the out dir is followed. Done for every page, that walk is two or three
opens and as many closes: system calls which each give up the GIL, and in a process of many
worker threads each costs a hand-over of the GIL and back (on a wide-area link, a quarter of
all the GIL hand-overs a page cost went to saving it). So a run keeps the descriptors of the
first folders it writes to (`Folders`), shared by its threads; a page in any other folder
takes the walk.

A folder removed while the run goes on is not written into through its old descriptor: a
write that fails through a kept descriptor is tried once more through a fresh walk
(`fetcher.store.pages.save`), which makes the folder again, as a run without them would. A
write that fails in a folder still there (ENOSPC, EACCES) fails its page alone: the
descriptor stays kept (retired ones stay open until `close`, one per folder really gone).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

KEPT = 256  # folders a run keeps open (one per host and path prefix it has written to)

Walk = Callable[[Path, list[str]], int]


class Folders:
    """Descriptors of folders under one out dir, kept from first use until `close`.

    Thread-safe, and never closes a descriptor under a thread: one forgotten (`forget`) is
    closed only at `close`, which the run calls once its threads are done.
    """

    def __init__(self, out: Path, kept: int = KEPT) -> None:
        self.out = out
        self.kept = kept
        self.lock = threading.Lock()
        self.fds: dict[tuple[str, ...], int] = {}
        self.retired: list[int] = []

    def get(self, names: tuple[str, ...], walk: Walk) -> tuple[int, bool]:
        """(descriptor of out/names..., whether it is kept here): one kept, or one opened by
        `walk(out, names)` and kept if there is room (the caller closes one not kept)."""
        fd = self.fds.get(names)  # (a dict read is atomic: no lock for the common case)
        if fd is not None:
            return fd, True
        opened = walk(self.out, list(names))
        with self.lock:
            if names in self.fds or len(self.fds) >= self.kept:
                return opened, False
            self.fds[names] = opened
            return opened, True

    def forget(self, names: tuple[str, ...], fd: int) -> None:
        """Stop handing out `fd` for `names` (its folder may be gone); closed at `close`."""
        with self.lock:
            if self.fds.get(names) == fd:
                del self.fds[names]
                self.retired.append(fd)

    def close(self) -> None:
        """Close every descriptor: only once no thread writes pages any more."""
        with self.lock:
            fds, self.fds, self.retired = [*self.fds.values(), *self.retired], {}, []
        for fd in fds:
            os.close(fd)
