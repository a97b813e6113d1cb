"""The standard streams the command talks through, passed in rather than read from `sys`
(httpie's Environment): the console script gives the process's own; a test gives its own and
runs the whole command in-process."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from typing import BinaryIO, TextIO, cast


@dataclass
class Environment:
    """Standard input (bytes, read unbuffered), output (records) and error (people), each
    None when the process was started with it closed, and whether each is a terminal; and
    the command's arguments, for the command that finishes a stopped run."""

    stdin: BinaryIO | None
    stdout: TextIO | None
    stderr: TextIO
    stdin_isatty: bool = False
    stdout_isatty: bool = False
    stderr_isatty: bool = False
    argv: tuple[str, ...] = ()

    @classmethod
    def of_process(cls) -> Environment:
        """This process's streams; standard error forgiving (`Forgiving`)."""
        stdin = None if sys.stdin is None else sys.stdin.buffer
        stderr = sys.stderr if isinstance(sys.stderr, Forgiving) else Forgiving(sys.stderr)
        return cls(
            stdin=getattr(stdin, "raw", stdin),  # see inputs._open: read unbuffered
            stdout=sys.stdout,
            stderr=cast(TextIO, stderr),
            stdin_isatty=_isatty(sys.stdin),
            stdout_isatty=_isatty(sys.stdout),
            stderr_isatty=_isatty(sys.stderr),
        )

    def flush(self) -> None:
        """Flush standard output and error, whatever state they are in."""
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()


def _isatty(stream: TextIO | None) -> bool:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return stream is not None and stream.isatty()
    return False


class Forgiving(io.TextIOBase):
    """Standard error for people: when it is closed (2>&-) or cannot be written (a full disk),
    messages are lost rather than the run, and never land on standard output (print(file=None)
    writes to stdout)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                return self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def fileno(self) -> int:
        if self.stream is None:
            raise io.UnsupportedOperation("standard error is closed")
        return self.stream.fileno()
