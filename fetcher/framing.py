"""A response read as a strict HTTP/1.1 reader reads it (RFC 9112): h11 parses the head and
frames the body, under http.client's response interface, which urllib3 and requests use.

http.client is lenient where leniency changes the bytes saved: a malformed header line ends
its header block (the rest of the head, Content-Length and Transfer-Encoding among it, is
then read as body), a head cut short is a response with no headers, chunk sizes go through
`int(x, 16)` (`+5`, `0x5`, `1_0`) and the CRLF after chunk data is never looked at. h11 (pure
Python, RFC 9112 to the letter, used under httpx) reads every header line as `token ":" OWS
value OWS`, chunk sizes as 1*HEXDIG, insists on the CRLF after each chunk, bounds trailers,
gives 1xx, 204, 304 and answers to HEAD no body, and refuses conflicting Content-Lengths.
Bare LF line endings and obs-fold stay accepted, as browsers and curl accept them. Two of its
readers are fetcher's (`_Parser`): the head's reads the status before the framing headers
(a 204's are dropped unread; an HTTP/1.0 answer's Transfer-Encoding is faulty framing), and
the chunked body's holds chunk lines to RFC 9112 §7.1.1 and takes bare LF there too.

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
from h11._readers import ChunkedReader, _decode_header_lines, status_line_re
from h11._receivebuffer import ReceiveBuffer
from h11._util import LocalProtocolError

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
_FRAMING = (b"content-length", b"transfer-encoding")
# RFC 9112 §7.1, §7.1.1: chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS name
# [ BWS "=" BWS ( token / quoted-string ) ] ); a bare LF ends it as it ends a header line.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,20})(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*\r?\n"
    % (_TOKEN, _TOKEN, _QUOTED)
)


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


class _Parser(h11.Connection):
    """h11, with fetcher's readers of a response's head and of chunked framing (h11 picks a
    reader for each state of the answer in _get_io_object)."""

    def __init__(self) -> None:
        super().__init__(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)

    def sent(self, request: h11.Request) -> None:
        """Move on as if `request` (with no body) had been sent: urllib3 sends the request,
        h11 only has to know it went (its `send` would also write it out, to be thrown
        away: a fifth of what reading an answer cost)."""
        self._process_event(h11.CLIENT, request)
        self._process_event(h11.CLIENT, _END)

    def _get_io_object(self, role: Any, event: Any, io_dict: Any) -> Any:
        reader = super()._get_io_object(role, event, io_dict)
        if role is not h11.SERVER:  # (our writer)
            return reader
        if self.their_state is h11.SEND_RESPONSE:
            return self._read_head
        return _Chunks() if isinstance(reader, ChunkedReader) else reader

    def _read_head(self, buf: ReceiveBuffer) -> h11.Response | h11.InformationalResponse | None:
        """A head as h11 reads it, but its status is looked at before its framing headers:
        a 1xx, 204 or 304 has no body whatever Content-Length or Transfer-Encoding say (RFC
        9112 §6.3 rule 1), and they are dropped; an HTTP/1.0 answer with Transfer-Encoding
        is faulty (§6.1); and a major version other than 1 is not HTTP/1.x at all."""
        lines: Any = buf.maybe_extract_lines()
        if lines is None:
            if buf.is_next_line_obviously_invalid_request_line():
                raise LocalProtocolError("illegal status line")
            return None
        if not lines:
            raise LocalProtocolError("no status line received")
        matches = status_line_re.fullmatch(lines[0])
        if matches is None:
            raise LocalProtocolError(f"illegal status line: {bytes(lines[0])!r}")
        status, version = int(matches["status_code"]), matches["http_version"] or b"1.1"
        if not version.startswith(b"1."):  # (RFC 9110 §2.5: another major version is
            # another protocol, whose framing HTTP/1.1's rules do not tell; curl refuses it)
            raise LocalProtocolError(f"HTTP/{version.decode()} is not HTTP/1.x")
        headers = list(_decode_header_lines(lines[1:]))
        framing = [header for header in headers if header[0].lower() in _FRAMING]
        if framing and (status < 200 or status in (204, 304)):
            headers = [header for header in headers if header[0].lower() not in _FRAMING]
        elif version == b"1.0" and any(name.lower() == _FRAMING[1] for name, _ in framing):
            raise LocalProtocolError("Transfer-Encoding in an HTTP/1.0 answer (RFC 9112 §6.1)")
        kind = h11.InformationalResponse if status < 200 else h11.Response
        return kind(headers=headers, _parsed=True, status_code=status,
                    reason=matches["reason"] or b"", http_version=version)  # fmt: skip


class _Chunks:
    """Chunked framing as RFC 9112 §7.1 has it, where h11 takes anything after a chunk size's
    ";" and wants CRLF where browsers and curl also take a bare LF."""

    def __init__(self) -> None:
        self._left = 0  # bytes of the current chunk still to come
        self._line_end = self._trailer = False
        self._searched = 0  # how far a chunk line's end has been looked for

    def __call__(self, buf: ReceiveBuffer) -> h11.Data | h11.EndOfMessage | None:
        if self._trailer:
            lines: Any = buf.maybe_extract_lines()
            return (
                None if lines is None else h11.EndOfMessage(headers=[*_decode_header_lines(lines)])
            )
        data = buf._data  # (h11's buffer: a bytearray)
        if self._line_end:  # after a chunk's data
            if data[:1] == b"\n" or data[:2] == b"\r\n":
                buf._extract(2 if data[:1] == b"\r" else 1)
            elif not data or data == b"\r":
                return None
            else:
                raise LocalProtocolError(f"malformed chunk footer: {bytes(data[:8])!r}")
            self._line_end = False
        start = self._left == 0
        if start:
            end = data.find(b"\n", self._searched)
            if end < 0:
                self._searched = len(data)
                return None
            line, self._searched = bytes(buf._extract(end + 1)), 0
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise LocalProtocolError(f"illegal chunk header: {line[:40]!r}")
            self._left = int(match[1], 16)
            if self._left == 0:
                self._trailer = True
                return self(buf)
        piece = buf.maybe_extract_at_most(self._left)
        if piece is None:
            return None
        self._left -= len(piece)
        self._line_end = self._left == 0
        return h11.Data(
            data=piece,  # type: ignore[arg-type]
            chunk_start=start,
            chunk_end=self._line_end,
        )

    def read_eof(self) -> None:
        raise h11.RemoteProtocolError(
            "peer closed connection without sending complete message body (chunked)"
        )


class StrictResponse(http.client.HTTPResponse):
    """http.client's response with h11 reading the head and the body's framing."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:  # fmt: skip
        super().__init__(sock, debuglevel, method, url)
        self._sock = sock
        self._parser = _Parser()
        self._parser.sent(_request(method or "GET"))
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
