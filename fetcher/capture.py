"""The bytes of every HTTP exchange of one URL, as sent and as received, for --warc. No disk.

A `Tape` is switched on for the thread that fetches a URL (`recording`); the fetch path then
tells it, at four points, what went over the wire: the URL each request is for (`begin`, in
fetcher.http), the request's bytes as the connection sends them (`sent`, fetcher.watchdog's
connections), the answer's head as the strict reader read it (`answered`), and each piece of
body as read before any Content-Encoding is undone (`received`, fetcher.response). With no
tape on, each point costs one attribute look-up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# What a response record's head says of a body whose chunked framing was taken off (the
# record holds the body as one piece): the original header under the name replay tools give
# an archived response's own headers (pywb's X-Archive-Orig-), and the length it now has.
ORIGINAL_PREFIX = "X-Archive-Orig-"


@dataclass
class Exchange:
    """One request and the answer to it (if one came), as they went over the wire."""

    url: str  # as requested, credentials and all (masked when written)
    date: datetime  # when the request went out
    request: bytearray = field(default_factory=bytearray)  # the head sent
    ip: str | None = None  # the server's address, unless a proxy stood between
    status_line: str = ""  # "HTTP/1.1 200 OK"; empty if no answer came
    headers: list[tuple[str, str]] = field(default_factory=list)  # as received, in order
    body: bytearray = field(default_factory=bytearray)  # chunking removed, coding kept
    ended: bool = False  # the body was read to its end
    truncated: str | None = None  # why not (WARC-Truncated: length, time, disconnect)

    @property
    def answered(self) -> bool:
        return bool(self.status_line)

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1]) if self.status_line else 0

    def header(self, name: str) -> str | None:
        """The first value of a response header (names compared without case)."""
        lower = name.lower()
        return next((v for n, v in self.headers if n.lower() == lower), None)

    def response_head(self) -> bytes:
        """Status line and headers as the record holds them: chunked framing, which the
        record's body no longer has, named under ORIGINAL_PREFIX and replaced by a length."""
        headers = self.headers
        if any(n.lower() == "transfer-encoding" for n, _ in headers):
            kept = [(n, v) for n, v in headers if n.lower() not in _FRAMING]
            moved = [(ORIGINAL_PREFIX + n, v) for n, v in headers if n.lower() in _FRAMING]
            headers = [*kept, *moved, ("Content-Length", str(len(self.body)))]
        lines = [self.status_line, *(f"{n}: {v}" for n, v in headers), "", ""]
        return "\r\n".join(lines).encode("latin-1", "replace")


_FRAMING = ("transfer-encoding", "content-length")


class Tape:
    """The exchanges of one URL, in the order they happened (redirect hops, retries)."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    @property
    def last(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    def begin(self, url: str) -> None:
        self.exchanges.append(Exchange(url, datetime.now(timezone.utc)))

    def resend(self) -> None:
        """The request goes out (again: a kept-alive connection found closed before it
        answered has it sent once more on a new one, session.StaleRetry): what the earlier
        try sent is not the exchange's."""
        if self.last is not None:
            self.last.request, self.last.ip = bytearray(), None

    def sent(self, data: bytes, ip: str | None) -> None:
        if self.last is not None:
            self.last.request += data
            self.last.ip = self.last.ip or ip

    def answered(self, original: Any) -> None:
        """The head of the answer, from the http.client response the strict reader filled."""
        exchange = self.last
        if exchange is None or original is None or not hasattr(original, "msg"):
            return
        version = "HTTP/1.0" if getattr(original, "version", 11) == 10 else "HTTP/1.1"
        exchange.status_line = f"{version} {original.status} {original.reason}".rstrip()
        exchange.headers = list(original.msg.raw_items())

    def received(self, data: bytes) -> None:
        if self.last is not None:
            self.last.body += data

    def ended(self) -> None:
        if self.last is not None:
            self.last.ended = True

    def cut(self, reason: str) -> None:
        """The attempt ended before the body did: say why in the record."""
        exchange = self.last
        if exchange is not None and not exchange.ended and exchange.truncated is None:
            exchange.truncated = reason


_local = threading.local()


def current() -> Tape | None:
    """This thread's tape, if the URL it fetches is being recorded."""
    tape: Tape | None = getattr(_local, "tape", None)
    return tape


@contextlib.contextmanager
def recording(on: bool) -> Iterator[Tape | None]:
    """Record this thread's exchanges while held (`on`), else nothing."""
    tape = Tape() if on else None
    _local.tape = tape
    try:
        yield tape
    finally:
        _local.tape = None


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Nothing recorded while held: a proxy's CONNECT is not the request."""
    tape, _local.tape = current(), None
    try:
        yield
    finally:
        _local.tape = tape
