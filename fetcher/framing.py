"""A response read as a strict HTTP/1.1 reader reads it (RFC 9112): h11 parses the head and
frames the body, under http.client's response interface, which urllib3 and requests use.

http.client is lenient where leniency changes the bytes saved: a malformed header line ends
its header block (the rest of the head, Content-Length and Transfer-Encoding among it, is
then read as body), a head cut short is a response with no headers, chunk sizes go through
`int(x, 16)` (`+5`, `0x5`, `1_0`) and the CRLF after chunk data is never looked at. h11 (pure
Python, RFC 9112 to the letter, used under httpx) reads every header line as `token ":" OWS
value OWS`, chunk sizes as 1*HEXDIG, insists on the CRLF after each chunk, bounds trailers,
gives 1xx, 204, 304 and answers to HEAD no body, and refuses conflicting Content-Lengths.
Bare LF line endings and obs-fold stay accepted, as browsers and curl accept them.

Only the reading changes hands: the connection, its socket (and so the watchdog), TLS,
proxies, keep-alive and urllib3's pool stay as they are. h11 is told of a request it never
sends (the method is what matters: a HEAD's answer has no body) and fed what the socket gives.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import re
import socket
from typing import Any

import h11

# Chrome's limit on a response's header block (curl's is 300 KiB); h11 applies it to every
# part it must hold whole: the head, a chunk-size line, the trailers.
MAX_HEADER_BYTES = 256 * 1024
MAX_HEADERS = 1000  # lines; real sites send over http.client's 100 (cookies, links, CSP)
MAX_INTERIM = 100  # 1xx answers before the answer
READ = 64 * 1024
HTTP_NAME = b"HTTP/"
_INVALID = "the server's answer is not valid HTTP ({})"
_BYTEARRAY = re.compile(r"bytearray\((b(['\"]).*?\2)\)")
# The request h11 is told of, one per method, made once (h11 validates a request it is given,
# which took a third of a response's reading). The Upgrade proposal lets a 101 through as an
# answer (fetcher then fails it, and the connection goes), where h11 would call it an error.
_REQUEST_HEADERS = [("Host", "fetcher"), ("Connection", "upgrade"), ("Upgrade", "fetcher")]
_END = h11.EndOfMessage()


@functools.lru_cache(maxsize=8)
def _request(method: str) -> h11.Request:
    return h11.Request(method=method, target="/", headers=_REQUEST_HEADERS)


class NotValidHTTP(http.client.HTTPException):
    """The answer breaks HTTP/1.1's grammar or framing: none of its bytes can be trusted."""


class UnsupportedFraming(http.client.HTTPException):
    """A Transfer-Encoding other than chunked alone: read as if absent, its framing would be
    saved as the page. Trying again will not help."""


class HeadersTooLong(http.client.HTTPException):
    """The response's header block is over MAX_HEADER_BYTES."""


class TooManyHeaders(http.client.HTTPException):
    """The response has more than MAX_HEADERS header lines."""


class BodyCutShort(http.client.HTTPException):
    """The connection ended before the body's framing said it would."""


class StrictResponse(http.client.HTTPResponse):
    """http.client's response with h11 reading the head and the body's framing."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:  # fmt: skip
        super().__init__(sock, debuglevel, method, url)
        self._sock = sock
        self._parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._parser.send(_request(method or "GET"))
        self._parser.send(_END)
        self._pending = b""  # body bytes h11 gave that the reader has not taken yet
        self._start = b""  # the answer's first bytes: is it HTTP at all?
        self._fed = 0  # bytes given to h11
        self._headed = self._ended = False

    def begin(self) -> None:
        """Read the head (1xx answers skipped, as a browser skips them) into http.client's
        attributes, which urllib3 builds its response from."""
        if self._headed:  # (http.client's own guard)
            return
        event = self._final_head()
        if self._fed - len(self._parser.trailing_data[0]) > MAX_HEADER_BYTES:
            # (h11 bounds a head still incomplete: one that ends in the last read may be over)
            raise HeadersTooLong(f"response headers longer than {MAX_HEADER_BYTES // 1024} KiB")
        if len(event.headers) > MAX_HEADERS:
            raise TooManyHeaders(f"the server sent more than {MAX_HEADERS} header lines")
        self._take_head(event)

    def _final_head(self) -> h11.Response | h11.InformationalResponse:
        """The answer's head, after any 1xx but a 101 (which ends the exchange)."""
        for _ in range(MAX_INTERIM):
            event = self._next_event()
            if not (isinstance(event, h11.InformationalResponse) and event.status_code != 101):
                assert isinstance(event, (h11.Response, h11.InformationalResponse)), event
                return event
        raise NotValidHTTP(_INVALID.format(f"more than {MAX_INTERIM} 1xx answers"))

    def _take_head(self, event: h11.Response | h11.InformationalResponse) -> None:
        self.status, self.code = event.status_code, event.status_code
        self.reason = event.reason.decode("latin-1")
        self.version = 10 if event.http_version == b"1.0" else 11
        message = http.client.HTTPMessage()
        for name, value in event.headers.raw_items():
            message.set_raw(name.decode("latin-1"), value.decode("latin-1"))
        self.headers = self.msg = message
        self._headed = True
        self.chunked, self.length = False, None  # the framing is h11's, not http.client's
        self.will_close = event.status_code == 101 or self._parser.our_state is h11.MUST_CLOSE
        if event.status_code == 101:  # what follows is another protocol: no body of ours
            self._end()
        else:
            self._fill(block=False)  # a body of no length ends here and now

    def read1(self, n: int = -1) -> bytes:
        """At most `n` bytes of the body (all that is at hand if `n` < 0), b"" at its end."""
        while not self._pending and not self._ended:
            self._fill(block=True)
        size = len(self._pending) if n is None or n < 0 else n
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def read(self, amt: int | None = None) -> bytes:
        """`amt` bytes of the body, fewer only at its end (all of it when `amt` is None)."""
        pieces, wanted = [], -1 if amt is None or amt < 0 else amt
        while wanted != 0 and (piece := self.read1(wanted)):
            pieces.append(piece)
            wanted = wanted - len(piece) if wanted > 0 else wanted
        return b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def peek(self, n: int = 0) -> bytes:
        while not self._pending and not self._ended:
            self._fill(block=True)
        return self._pending

    def readline(self, limit: int | None = -1) -> bytes:
        line = b""
        while (limit is None or limit < 0 or len(line) < limit) and not line.endswith(b"\n"):
            piece = self.read1(1)
            if not piece:
                break
            line += piece
        return line

    def _fill(self, block: bool) -> None:
        """Take the body events h11 has at hand (waiting for the socket only if `block`)."""
        while True:
            event = self._next_event(block)
            if isinstance(event, h11.Data):
                self._pending += bytes(event.data)
                block = False
            elif event is h11.NEED_DATA:
                return
            else:  # EndOfMessage, or PAUSED after a 101, or ConnectionClosed
                self._end()
                return

    def _end(self) -> None:
        """The body is whole: the connection may serve again unless bytes came after it."""
        self._ended = True
        if self._parser.trailing_data[0]:  # not ours to read, nor the next answer's
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        self._close_conn()  # type: ignore[attr-defined]

    def _next_event(self, block: bool = True) -> Any:
        """h11's next event, reading from the socket as it needs (if `block`, else NEED_DATA
        says it would have to); h11's refusals made ours."""
        try:
            while (event := self._parser.next_event()) is h11.NEED_DATA and block:
                data = self.fp.read1(READ) if self.fp is not None else b""
                self._fed += len(data)
                if len(self._start) < len(HTTP_NAME):
                    self._start += data[: len(HTTP_NAME)]
                self._parser.receive_data(data)
            return event
        except h11.RemoteProtocolError as exc:
            refused = exc
        raise self._error(refused)  # outside the handler: ours is the root cause, not h11's

    def _error(self, exc: h11.RemoteProtocolError) -> http.client.HTTPException:
        """What h11 refused, in the terms fetcher reports it in."""
        detail = _BYTEARRAY.sub(r"\1", str(exc))[:120]  # "bytearray(b'X-Bad : v')" → "b'X-Bad : v'"
        closed = "closed connection" in detail  # (h11 says "peer [unexpectedly] closed ...")
        if exc.error_status_hint == 431:
            return HeadersTooLong(f"response headers longer than {MAX_HEADER_BYTES // 1024} KiB")
        if exc.error_status_hint == 501:
            return UnsupportedFraming(f"unsupported Transfer-Encoding ({detail})")
        if self._headed:  # in the body
            return BodyCutShort(detail) if closed else NotValidHTTP(_INVALID.format(detail))
        if not self._start:
            return http.client.RemoteDisconnected("Remote end closed connection without response")
        if not HTTP_NAME.startswith(self._start[: len(HTTP_NAME)]):
            return http.client.BadStatusLine(detail)  # some other protocol altogether
        return NotValidHTTP(_INVALID.format("cut short inside its head" if closed else detail))
