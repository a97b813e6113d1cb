"""A local HTTP server whose routes misbehave on purpose, and that records what it received.

Standard library only. Routes (all GET):

  /page/<name>                 small UTF-8 HTML page (ETag + Last-Modified; honours both)
  /status/<code>               that status, empty body
  /flaky/<n>/<code>/<key>      <code> for the first n requests of <key>, then a page
  /retry-after/<value>/<code>  <code> with Retry-After: <value> (secs; "date+N" = HTTP date)
  /slow/<seconds>              waits, then a page
  /trickle                     headers at once, then one byte every 0.5 s for 10 s
  /truncated                   Content-Length 1000, sends 10 bytes, closes
  /reset                       reads the request, then resets the connection
  /bad-chunked                 chunked encoding with a chunk size that is not hex
  /not-http                    answers with something that is not HTTP
  /gzip-bomb                   gzip body that inflates to 200 MiB of zeros
  /bad-gzip                    Content-Encoding: gzip over bytes that are not gzip
  /big/<bytes>                 a text/plain body of that size (Content-Length set)
  /redirect/<n>                a chain of n redirects ending at a page
  /loop                        redirects to itself
  /redirect-to?url=<url>       redirects to any URL (e.g. ftp://)
  /set-cookie[?to=<url>]       sets cookie chain=1 and redirects to /echo-cookie/ (or <url>)
  /echo-cookie/                answers with the Cookie header it received
  /charset/<name>              test pages in various charsets, see CHARSET_PAGES
  /binary                      a few bytes of image/png, including invalid UTF-8
  /no-type                     a body with no Content-Type
  /headers/<name>?<h>=<v>&...  a page sent with these response headers; honours its ETag
  /robots.txt                  the server's `robots` (status, body; a 3xx's body is its
                               Location), else 404
  /file/<name>                 the server's `files[name]` as text/plain
  /encoded/<gzip|br>           a page sent with that Content-Encoding (ENCODED_TEXT)
  /chunked                     a page sent in chunks (Transfer-Encoding: chunked)
  /close/<name>                a page, then the connection closed (no `Connection: close`)

The server counts the connections it accepted (`connections`); `drop_connections()` closes
every one still open, as a server closes idle keep-alive connections.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter, defaultdict
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import brotli

ENCODED_TEXT = ("<p>" + "encoded, naïve café " * 50 + "</p>").encode()
CHUNKS = (b"first piece, ", b"second piece, ", "третий кусок".encode())
BOMB_SIZE = 200 * 1024 * 1024
_BOMB = gzip.compress(b"\0" * BOMB_SIZE, compresslevel=9)  # ~200 KB on the wire
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" + bytes(range(256))
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"

RUSSIAN = "Привет, мир! Съешь же ещё этих мягких французских булок."
CHINESE = "你好，世界。这是一个用国标码编写的网页，只在元标签里声明字符集。"
JAPANESE = "こんにちは世界。これはシフトJISで書かれたページです。"
# name → (Content-Type header, body bytes, the text a correct decoder must find)
CHARSET_PAGES: dict[str, tuple[str, bytes, str]] = {
    "gbk-meta": ("text/html", f'<html><head><meta charset="gbk"></head><body>{CHINESE}</body>'
                 "</html>".encode("gbk"), CHINESE),
    "gb2312-meta-gbk-chars": ("text/html", f'<meta charset="gb2312"><p>{CHINESE}碁</p>'
                              .encode("gbk"), CHINESE + "碁"),
    "sjis-http-equiv": ("text/html", (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
        f"</head><body>{JAPANESE}</body></html>").encode("shift_jis"), JAPANESE),
    "cp1251-header": ("text/html; charset=windows-1251",
                      f"<html><body>{RUSSIAN}</body></html>".encode("cp1251"), RUSSIAN),
    "utf8-undeclared": ("text/html", f"<html><body>{RUSSIAN} {CHINESE}</body></html>"
                        .encode(), RUSSIAN),
    "cp1251-undeclared": ("text/plain", (RUSSIAN * 8).encode("cp1251"), RUSSIAN),
    "utf8-bom": ("text/html", b"\xef\xbb\xbf" + f"<p>{RUSSIAN}</p>".encode(), RUSSIAN),
    "utf16-bom": ("text/plain", "\ufeff" .encode("utf-16-le") + RUSSIAN.encode("utf-16-le"),
                  RUSSIAN),
    "xml-decl": ("application/xml", f'<?xml version="1.0" encoding="windows-1251"?><r>{RUSSIAN}'
                 "</r>".encode("cp1251"), RUSSIAN),
    "header-beats-meta": ("text/html; charset=utf-8", f'<meta charset="gbk"><p>{RUSSIAN}</p>'
                          .encode(), RUSSIAN),
    "unknown-declared": ("text/html", f'<meta charset="x-no-such"><p>{RUSSIAN}</p>'.encode(),
                         RUSSIAN),
    "invalid-bytes": ("text/html; charset=utf-8", b"<p>ok \xff\xfe bad</p>", "ok \ufffd"),
    "latin1-header": ("text/html; charset=iso-8859-1", "<p>caf\xe9 \x93quoted\x94</p>"
                      .encode("latin-1"), "café “quoted”"),
}  # fmt: skip


class Recorder:
    """What the server saw: per-path counts, headers, start times, concurrency in flight. A
    request is in flight from its arrival until its answer starts to go out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.times: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.spans: list[tuple[str, float, float]] = []  # (path, start, end) per request

    def begin(self, path: str, headers: dict[str, str]) -> float:
        with self.lock:
            now = time.monotonic()
            self.counts[path] += 1
            self.headers[path].append(headers)
            self.times[path].append(now)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return now

    def end(self, path: str, started: float) -> None:
        with self.lock:
            self.in_flight -= 1
            self.spans.append((path, started, time.monotonic()))

    def total(self) -> int:
        return sum(self.counts.values())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: FaultServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.started: float | None = self.server.recorder.begin(
            self.path, dict(self.headers.items())
        )
        try:
            route, _, rest = path.lstrip("/").partition("/")
            getattr(self, "route_" + re.sub(r"[-.]", "_", route), self.route_missing)(rest)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.answered()

    def answered(self) -> None:
        """The request is over for the recorder: called before the answer's body goes out
        (`send`, `raw`), so that a client which has read it and sent its next request can
        never be seen with both in flight, however late this thread runs again."""
        if self.started is not None:
            self.server.recorder.end(self.path, self.started)
            self.started = None

    # --- helpers -------------------------------------------------------------------------
    def send(
        self,
        code: int,
        body: bytes = b"",
        ctype: str | None = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.answered()
        self.end_headers()
        self.wfile.write(body)

    def raw(self, data: bytes) -> None:
        self.answered()
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    # --- routes --------------------------------------------------------------------------
    def route_missing(self, rest: str) -> None:
        self.send(404, b"not here")

    def route_page(self, name: str) -> None:
        etag = f'"{name}-v{self.server.versions[name]}"'
        if self.headers.get("If-None-Match") == etag or (
            self.headers.get("If-Modified-Since") == LAST_MODIFIED
            and not self.headers.get("If-None-Match")
        ):
            self.send(304, b"", None, {"ETag": etag})
            return
        body = page_body(name, self.server.versions[name])
        self.send(200, body, headers={"ETag": etag, "Last-Modified": LAST_MODIFIED})

    def route_headers(self, name: str) -> None:
        etag = f'"{name}-v{self.server.versions[name]}"'
        query = parse_qs(urlsplit(self.path).query)
        headers = {"ETag": etag, **{key: values[0] for key, values in query.items()}}
        if self.headers.get("If-None-Match") == etag:
            self.send(304, b"", None, headers)
            return
        self.send(200, page_body(name, self.server.versions[name]), headers=headers)

    def route_robots_txt(self, rest: str) -> None:
        code, body = self.server.robots or (404, "")
        if 300 <= code < 400:
            self.send(code, b"", None, {"Location": body})
        else:
            self.send(code, body.encode(), "text/plain")

    def route_file(self, name: str) -> None:
        self.send(200, self.server.files[name].encode(), "text/plain")

    def route_status(self, code: str) -> None:
        self.send(int(code), b"")

    def route_flaky(self, rest: str) -> None:
        n, code, key = rest.split("/", 2)
        with self.server.recorder.lock:
            self.server.flaky[key] += 1
            count = self.server.flaky[key]
        if count <= int(n):
            self.send(int(code), b"try again")
        else:
            self.send(200, page_body(key))

    def route_retry_after(self, rest: str) -> None:
        value, code = rest.split("/")
        if value.startswith("date+"):
            value = formatdate(time.time() + int(value[5:]), usegmt=True)
        self.send(int(code), b"busy", headers={"Retry-After": value})

    def route_slow(self, seconds: str) -> None:
        time.sleep(float(seconds))
        self.send(200, page_body(f"slow {seconds}"))

    def route_trickle(self, rest: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "20")
        self.end_headers()
        for _ in range(20):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.5)

    def route_truncated(self, rest: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.raw(b"0123456789")

    def route_reset(self, rest: str) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def route_bad_chunked(self, rest: str) -> None:
        self.raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n5\r\nhello\r\nzz-not-hex\r\nmore\r\n0\r\n\r\n"
        )

    def route_not_http(self, rest: str) -> None:
        self.raw(b"SSH-2.0-OpenSSH_9.2 this is not http\r\n\r\n")

    def route_gzip_bomb(self, rest: str) -> None:
        self.send(200, _BOMB, "text/plain", {"Content-Encoding": "gzip"})

    def route_bad_gzip(self, rest: str) -> None:
        self.send(200, b"this is not gzip at all" * 10, "text/plain", {"Content-Encoding": "gzip"})

    def route_big(self, size: str) -> None:
        self.send(200, b"a" * int(size), "text/plain")

    def route_redirect(self, n: str) -> None:
        left = int(n)
        target = f"/redirect/{left - 1}" if left > 1 else "/page/redirected"
        self.send(302, b"", None, {"Location": target})

    def route_loop(self, rest: str) -> None:
        self.send(302, b"", None, {"Location": "/loop"})

    def route_redirect_to(self, rest: str) -> None:
        target = parse_qs(urlsplit(self.path).query)["url"][0]
        self.send(302, b"", None, {"Location": target})

    def route_set_cookie(self, rest: str) -> None:
        """Sets a cookie and redirects (to /echo-cookie, or to ?to=<url>)."""
        target = parse_qs(urlsplit(self.path).query).get("to", ["/echo-cookie/"])[0]
        self.send(302, b"", None, {"Set-Cookie": "chain=1; Path=/", "Location": target})

    def route_echo_cookie(self, rest: str) -> None:
        self.send(200, f"cookie=[{self.headers.get('Cookie', '')}]".encode(), "text/plain")

    def route_charset(self, name: str) -> None:
        ctype, body, _ = CHARSET_PAGES[name]
        self.send(200, body, ctype)

    def route_binary(self, rest: str) -> None:
        self.send(200, PNG, "image/png")

    def route_close(self, name: str) -> None:
        self.send(200, page_body(name))
        self.close_connection = True

    def route_encoded(self, coding: str) -> None:
        body = gzip.compress(ENCODED_TEXT) if coding == "gzip" else brotli.compress(ENCODED_TEXT)
        self.send(200, body, "text/html; charset=utf-8", {"Content-Encoding": coding})

    def route_chunked(self, rest: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in CHUNKS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def route_no_type(self, rest: str) -> None:
        self.send(200, b"<html><body>untyped</body></html>", None)


def page_body(name: str, version: int = 0) -> bytes:
    text = f"<!doctype html><html><head><title>{name}</title></head><body><h1>{name}</h1>"
    return (text + f"<p>version {version} – naïve café</p></body></html>").encode()


class FaultServer(ThreadingHTTPServer):
    """Serve on 127.0.0.1, port 0, in a daemon thread; `url(path)` builds URLs to it."""

    daemon_threads = True
    request_queue_size = 256

    scheme = "http"

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.recorder = Recorder()
        self.flaky: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.robots: tuple[int, str] | None = None  # /robots.txt's status and body
        self.files: dict[str, str] = {}
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.connections = 0
        self.open: list[socket.socket] = []

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self.recorder.lock:
            self.connections += 1
            self.open = [s for s in self.open if s.fileno() != -1] + [request]
        super().process_request(request, client_address)

    def drop_connections(self) -> None:
        with self.recorder.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose are part of the tests

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.server_address[0]}:{self.port}{path}"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def free_port_refusing() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
