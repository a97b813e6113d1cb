"""Exit codes, the exception tree (every exception says whether a retry can help), and how
fetcher's own processes end."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from enum import IntEnum
from typing import NoReturn

# statuses worth another try: timeouts, too early, too many requests, server errors
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ExitCode(IntEnum):
    """The process exit status, as documented in README and the contract."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    ALL_FAILED = 3
    INTERNAL = 70  # EX_SOFTWARE: a bug in fetcher (the one-line error asks for a report)
    OUTPUT = 74  # EX_IOERR: records (stdout) or --summary-json could not be written
    BUSY = 75  # EX_TEMPFAIL: another run holds the out dir; cron may simply try later
    SIGINT = 130
    SIGPIPE = 141  # the reader of --jsonl went away, as a shell pipeline reports it
    SIGTERM = 143


def leave(code: int) -> NoReturn:
    """End this process with `code` as an exit would (exit handlers run, standard streams
    flushed), without the interpreter's teardown of every module and object: 50 ms or more
    that a finished command or worker process does not need. Only for processes fetcher
    owns (the console script, a worker), never in a caller's code, whose own `finally`
    blocks and `except SystemExit` must run. While a non-daemon thread still runs (an exit
    waits for it), or when standard output cannot be flushed (Python reports that), it
    exits the usual way."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


class FetcherError(Exception):
    """Base of every error fetcher raises on purpose."""


class UsageError(FetcherError):
    """Bad options or unusable inputs/out dir: the run cannot start (exit 2)."""


class OutDirBusy(FetcherError):
    """Another fetcher run holds the out dir's lock (exit 75)."""

    def __init__(self, out: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{out} is in use by another fetcher run ({who}); try again later")
        self.out = out
        self.pid = pid

    def __reduce__(self) -> tuple[type[OutDirBusy], tuple[str, int | None]]:
        return (type(self), (self.out, self.pid))


class FetchError(FetcherError):
    """One URL could not be fetched; `transient` says whether trying again may help.

    `retry_after` is the server's own wait (Retry-After), in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.attempts = 1  # set by get_source to the requests made in all

    def __reduce__(self) -> tuple[object, ...]:
        state = {
            "transient": self.transient,
            "status": self.status,
            "retry_after": self.retry_after,
            "attempts": self.attempts,
        }
        return (_rebuild_fetch_error, (type(self), self.message, state))

    def __str__(self) -> str:
        return self.message


def _rebuild_fetch_error(
    cls: type[FetchError], message: str, state: dict[str, object]
) -> FetchError:
    error = cls(message)
    error.__dict__.update(state)
    return error


class HTTPStatusError(FetchError):
    """The server answered with an error status."""


class TooLarge(FetchError):
    """The body is larger than --max-size (never retried)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
