"""A raw-socket server for what http.server will not send: lies about framing and encoding,
and answers that trickle or never end. Standard library (plus brotli and zstd, which fetcher
itself depends on). Every answer stops by itself within SCRIPT_LIMIT seconds.

Each route is a generator of byte strings to send; a float instead of bytes means "pause this
long". Routes (GET /<route>/<arg>):

  trickle-headers       a status line, then header bytes one every 0.2 s
  trickle-chunk-size    chunked: a chunk-size line that never ends, a digit every 0.2 s
  endless-trailers      chunked: a last chunk, then trailer lines for ever
  endless-deflate       Content-Encoding: deflate of empty blocks for ever
  endless-body          no length, 64 KiB every few ms for ever
  redirect-endless      302 with a Location and a body that never ends
  redirect-bomb         302 with a gzip bomb as its body, to /page
  bomb/<coding>         100 MiB of zeros in gzip, deflate, br or zstd
  page                  a small page (what the redirects lead to)
  encoded/<coding>      the page in gzip, deflate, raw-deflate, br, zstd, or "gzip,br"
  truncated/<coding>    the same, cut at a third, Connection: close, no length
  unknown-encoding      Content-Encoding: compress (nobody decodes it)
  charset/<label>       a text page with Content-Type charset=<label>
  content-length/<v>    "hello" with Content-Length: <v> (URL-decoded)
  many-headers/<n>      a page with n extra headers
  huge-headers          header lines of 8 KiB for ever
  early-hints/<code>    a 1xx answer (103, 102) before the page
  stacked/<n>           the page in gzip n times over
  transfer-encoding/<v> a chunked body under Transfer-Encoding: <v>
  euro/<n>              n euro signs in windows-1252 (a body that triples as UTF-8)
  latin1-location       a redirect whose Location is not UTF-8
  trailing/<status>     a 302 (to /page/) or other status whose chunked body never ends
  cpu-bomb              gzip thrice over a stream of empty deflate blocks (inflates to nothing)

With `tls_trickle=True` the server instead answers a TLS ClientHello a byte every 0.2 s.
"""

from __future__ import annotations

import functools
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import brotli

try:
    from backports import zstd
except ImportError:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found,no-redef]

SCRIPT_LIMIT = 30.0
PAGE = (
    "<!doctype html><html><body><h1>Whole page</h1>" + "<p>All of it.</p>" * 2000 + "</body></html>"
).encode()
BOMB_SIZE = 100 * 1024 * 1024
Script = Iterator["bytes | float"]


def head(status: str = "200 OK", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode(coding: str, data: bytes) -> bytes:
    for name in coding.split(","):
        if name == "gzip":
            data = gzip.compress(data)
        elif name == "deflate":
            data = zlib.compress(data)
        elif name == "raw-deflate":
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            data = packer.compress(data) + packer.flush()
        elif name == "br":
            data = brotli.compress(data, quality=5)
        elif name == "zstd":
            data = zstd.compress(data)
    return data


@functools.cache
def bomb(coding: str) -> bytes:
    """BOMB_SIZE zeros, compressed: a few kilobytes on the wire."""
    return encode(coding, b"\0" * BOMB_SIZE)


def header_name(coding: str) -> str:
    return coding.replace("raw-deflate", "deflate").replace(",", ", ")


def forever(piece: bytes, pause: float) -> Script:
    while True:
        yield piece
        yield pause


# --- routes ---------------------------------------------------------------------------------


def route_page(arg: str) -> Script:
    yield head("200 OK", "Content-Type: text/html; charset=utf-8", f"Content-Length: {len(PAGE)}")
    yield PAGE


def route_trickle_headers(arg: str) -> Script:
    yield b"HTTP/1.1 200 OK\r\n"
    yield from forever(b"X", 0.2)


def route_trickle_chunk_size(arg: str) -> Script:
    yield head("200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked")
    yield from forever(b"0", 0.2)  # leading zeros: a size line that never ends


def route_endless_trailers(arg: str) -> Script:
    yield head("200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked")
    yield b"5\r\nhello\r\n0\r\n"
    yield from forever(b"X-Trailer: more\r\n", 0.01)


def route_endless_deflate(arg: str) -> Script:
    yield head(
        "200 OK", "Content-Type: text/plain", "Content-Encoding: deflate", "Connection: close"
    )
    packer = zlib.compressobj()
    yield packer.compress(b"")
    empty = packer.flush(zlib.Z_SYNC_FLUSH)  # an empty stored block, and again, and again
    yield from forever(empty * 100, 0.01)


def route_endless_body(arg: str) -> Script:
    yield head("200 OK", "Content-Type: text/plain", "Connection: close")
    yield from forever(b"a" * 65536, 0.002)


def route_redirect_endless(arg: str) -> Script:
    yield head("302 Found", "Location: /page/", "Content-Type: text/plain", "Connection: close")
    yield from forever(b"a" * 65536, 0.002)


def route_redirect_bomb(arg: str) -> Script:
    yield from _bomb_answer("302 Found", "gzip", "Location: /page/")


def route_bomb(coding: str) -> Script:
    yield from _bomb_answer("200 OK", coding)


def _bomb_answer(status: str, coding: str, *headers: str) -> Script:
    yield from _coded(status, coding, bomb(coding), "text/plain", *headers)


def route_encoded(coding: str) -> Script:
    yield from _coded("200 OK", coding, encode(coding, PAGE), "text/html; charset=utf-8")


def _coded(status: str, coding: str, body: bytes, ctype: str, *headers: str) -> Script:
    yield head(
        status,
        *headers,
        f"Content-Type: {ctype}",
        f"Content-Encoding: {header_name(coding)}",
        f"Content-Length: {len(body)}",
    )
    yield body


def route_truncated(coding: str) -> Script:
    body = encode(coding, PAGE)
    yield head(
        "200 OK",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Encoding: {header_name(coding)}",
        "Connection: close",
    )
    yield body[: len(body) // 3]


def route_unknown_encoding(arg: str) -> Script:
    yield head(
        "200 OK",
        "Content-Type: text/html",
        "Content-Encoding: compress",
        f"Content-Length: {len(PAGE)}",
    )
    yield PAGE


def route_charset(label: str) -> Script:
    body = "<p>caf\u00e9 — ok</p>".encode()
    yield head(
        "200 OK", f"Content-Type: text/html; charset={label}", f"Content-Length: {len(body)}"
    )
    yield body


def route_content_length(value: str) -> Script:
    yield head(
        "200 OK", "Content-Type: text/plain", f"Content-Length: {value}", "Connection: close"
    )
    yield b"hello"


def route_many_headers(count: str) -> Script:
    extra = [f"X-Header-{i}: value {i}" for i in range(int(count))]
    yield head(
        "200 OK", "Content-Type: text/html; charset=utf-8", *extra, f"Content-Length: {len(PAGE)}"
    )
    yield PAGE


def route_huge_headers(arg: str) -> Script:
    yield b"HTTP/1.1 200 OK\r\n"
    yield from forever(b"X-Filler: " + b"f" * 8192 + b"\r\n", 0.001)


def route_early_hints(code: str) -> Script:
    yield f"HTTP/1.1 {code} Early\r\nLink: </style.css>; rel=preload\r\n\r\n".encode()
    yield from route_page("")


def route_stacked(count: str) -> Script:
    coding = ",".join(["gzip"] * int(count))
    yield from route_encoded(coding)


def route_transfer_encoding(value: str) -> Script:
    yield head("200 OK", "Content-Type: text/plain", f"Transfer-Encoding: {value}")
    yield b"5\r\nhello\r\n0\r\n\r\n"


def route_cpu_bomb(arg: str) -> Script:
    body = cpu_bomb()
    yield head(
        "200 OK",
        "Content-Type: text/plain",
        "Content-Encoding: gzip, gzip, gzip",
        f"Content-Length: {len(body)}",
    )
    yield body


def route_euro(count: str) -> Script:
    """windows-1252 text of <count> euro signs: its UTF-8 form is three times the body."""
    yield head(
        "200 OK", "Content-Type: text/html; charset=windows-1252", f"Content-Length: {count}"
    )
    yield b"\x80" * int(count)


def route_trailing(status: str) -> Script:
    """<status> (302 to /page/, or anything else) whose chunked body ends in endless trailers."""
    location = ["Location: /page/"] if status.startswith("3") else []
    yield head(f"{status} X", *location, "Transfer-Encoding: chunked")
    yield b"0\r\n"
    yield from forever(b"X-Trailer: more\r\n", 0.001)


def route_latin1_location(arg: str) -> Script:
    yield b"HTTP/1.1 302 Found\r\nLocation: /p\xe4ge/\r\nContent-Length: 0\r\n\r\n"


@functools.cache
def cpu_bomb() -> bytes:
    """gzip of gzip of a gzip stream of empty deflate blocks: the outer layers inflate, the
    inner one turns hundreds of megabytes into nothing."""
    empty_blocks = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\x00\x00\x00\xff\xff" * (
        BOMB_SIZE // 5
    )
    return gzip.compress(gzip.compress(empty_blocks, 1), 9)


ROUTES: dict[str, Callable[[str], Script]] = {
    name[len("route_") :].replace("_", "-"): func
    for name, func in globals().items()
    if name.startswith("route_")
}


class HostileServer:
    """Serve ROUTES on 127.0.0.1, port 0, a thread per connection; `url(path)` builds URLs."""

    def __init__(self, *, tls_trickle: bool = False) -> None:
        self.tls_trickle = tls_trickle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """One request per connection, closed after the answer (which many answers need: their
        body ends where the connection does)."""
        with conn:
            if self.tls_trickle:  # a TLS handshake that never completes
                conn.recv(65536)
                self._play(conn, _tls_trickle())
                return
            path = _read_request(conn)
            if path is None:
                return
            route, _, arg = path.lstrip("/").partition("/")
            script = ROUTES.get(route)
            if script is not None:
                self._play(conn, script(unquote(arg)))

    def _play(self, conn: socket.socket, script: Script) -> bool:
        """Send the script; False when the connection is done for."""
        deadline = time.monotonic() + SCRIPT_LIMIT
        try:
            for step in script:
                if self.stopping.is_set() or time.monotonic() > deadline:
                    return False
                if isinstance(step, float):
                    time.sleep(step)
                else:
                    conn.sendall(step)
        except OSError:
            return False
        return True


def _tls_trickle() -> Script:
    yield b"\x16\x03\x03\x40\x00"  # a handshake record of 16 KiB, sent a byte at a time
    yield from forever(b"\x02", 0.2)


def _read_request(conn: socket.socket) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            piece = conn.recv(65536)
        except OSError:
            return None
        if not piece:
            return None
        data += piece
    request_line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    return parts[1] if len(parts) == 3 else None
